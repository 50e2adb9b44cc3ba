"""The kiosk's touch UI: a small Starlette app served on 127.0.0.1 inside the agent
process (``server.UiServer``), calling ``CustomerFlows`` directly on the agent's event
loop. Screens in zh-CN by default with an English switch on each, large touch targets,
an idle timeout that ends the customer's session, and a demo panel (``/panel``) for the
simulated devices.

Plain HTML forms (post/redirect/get) plus one small script of its own (keypads, the
escrow total, the idle timer): the kiosk is a separate program and does not borrow the
staff console's vendored htmx / Alpine.
"""
