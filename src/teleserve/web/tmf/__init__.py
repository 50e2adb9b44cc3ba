"""TMF630 conventions shared by every TM Forum API router (``<domain>/api.py``).

- ``auth``: bearer tokens of API clients → the request's ``Actor`` and ``UnitOfWork``.
- ``listing``: ``fields`` / attribute filters / ``offset`` / ``limit`` → ``ListQuery``;
  list answers with ``X-Total-Count`` / ``X-Result-Count``.
- ``resources``: ``href`` and ``@type``, ``fields`` projection, 201 + ``Location``,
  merge-PATCH bodies, TMF ``Money``.
- ``errors``: every error under ``/tmf-api`` in the TMF error body (``code``, ``reason``,
  ``message``, ``status``, ``@type: Error``), the message in the request's language.

docs/tmf.md explains the choices and lists deliberate deviations from the specifications.
This package imports no domain but `iam.service` (bearer tokens): domains import it.
"""
