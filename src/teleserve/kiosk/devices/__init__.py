"""Device interfaces (``base``) and their drivers: ``sim`` now, ``xfs4iot`` next slice."""

from teleserve.kiosk.devices.base import Devices

__all__ = ["Devices"]
