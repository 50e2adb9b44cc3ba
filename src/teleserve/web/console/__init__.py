"""The staff console shell: sessions, CSRF, language, navigation, layout and error pages.

Everything under ``/console`` is one FastAPI sub-application (``app.create_console_app``)
mounted by ``teleserve.web.app``. Pages are server-rendered Jinja2 templates
(``src/teleserve/web/templates/``), enhanced with htmx and Alpine.js (vendored under
``web/static/vendor``). docs/console.md explains the decisions.

Adding a page (the whole interface)::

    # src/teleserve/<domain>/views.py
    from fastapi import APIRouter, Depends
    from fastapi.responses import Response
    from teleserve.web.console.page import ConsolePage, console_page

    router = APIRouter(prefix="/catalog")

    @router.get("", name="catalog_list")
    def catalog_list(page: ConsolePage = Depends(console_page)) -> Response:
        with page.uow(readonly=True) as uow:        # a unit of work as the logged-in actor
            offerings = catalog.list_offerings(uow)   # the service checks the permission
        return page.render("catalog/list.html", {"offerings": offerings})

then add the router to ``ROUTERS`` in ``web/console/app.py`` and point the menu entry in
``web/console/nav.py`` at the route name. Templates extend ``console/base.html`` and fill
``{% block title %}`` and ``{% block content %}``; every string goes through
``{{ _("English text") }}`` with its Chinese in ``locales/zh_CN/LC_MESSAGES/web.po``.

What the shell does for every page:

- ``console_page`` (a dependency) rebuilds the actor from the signed session cookie on
  each request (``iam.service.actor_for_user`` with the session stamp), ends idle or old
  sessions, sends anonymous users to the login page (an htmx request gets
  ``HX-Redirect``), and sends users who must enrol an authenticator to the enrolment page.
- Every POST, PUT, PATCH and DELETE must carry the session's CSRF token (form field
  ``csrf_token`` or header ``X-CSRF-Token``; htmx sends the header from ``<body>``).
  Forms include ``{{ csrf_field() }}``.
- A ``DomainError`` raised by a service becomes an error page in the layout, in the
  user's language, with the error's status: ``NotFound`` (which is also what another
  organisation's record gives) → 404, ``PermissionDenied`` → 403, and so on.
- ``page.render`` adds the base context: ``actor``, ``nav``, ``locale``, ``csrf_token``,
  ``_`` (translate), ``url`` (a route's path), filters ``money`` and ``local_time``.
- Lists export through ``teleserve.web.export`` (CSV with BOM, XLSX), audited.
"""
