"""The kiosk agent (``teleserve kiosk``): the terminal side of TSP/1.

A separate program from the server: it holds the business channel's long connection and
the management channel's short ones (``client``), keeps a durable local journal of every
request it may have to resend (``journal``), drives the devices (``devices``), recovers by
itself after a restart (``agent``) and offers the customer flows the touch UI calls
(``flows``). It uses only the pure TSP/1 codec of ``teleserve.gateway`` and the
settings-free helpers of ``teleserve.core`` (i18n, logging) — never a server-side domain
or the server's database.
"""
