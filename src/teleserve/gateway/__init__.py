"""TSP/1, the terminal service protocol (``../shared/PROTOCOL.md``): the pure protocol layer.

``frame`` (the 64-byte header and the frame), ``stream`` (an incremental decoder for a
byte stream), ``body`` (the JSON body rules), ``mac`` (HMAC keys and sign-on crypto),
``catalog`` (serv_types), ``errors`` (error codes and the error body), ``checks`` (the
order of checks a server runs on a request), ``fields`` (request body validation,
``10005``) and ``multiframe`` (splitting and assembling large answers). None of them
touches the database or the network: the servers are built on top of them.
"""
