"""Device interfaces (``base``) and their drivers: ``sim`` and ``xfs4iot``."""

from teleserve.kiosk.devices.base import Devices

__all__ = ["Devices"]
