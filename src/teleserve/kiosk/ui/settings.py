"""The touch UI's settings (command line or a test; the kiosk reads no server settings)."""

from __future__ import annotations

from dataclasses import dataclass

from teleserve.kiosk.config import ConfigError


@dataclass(frozen=True, slots=True)
class UiSettings:
    # The customer leaves without finishing: after this long without a touch the screen
    # ends their session (logout, escrow returned) and goes home.
    idle_timeout_s: float = 60.0
    # The server-side backstop (a closed or frozen browser) waits this much longer than
    # the screen's own timer, so that the screen, which sees every touch, decides first.
    idle_grace_s: float = 15.0
    # How often the screen polls the escrow total while notes go in.
    escrow_poll_ms: int = 700
    # The highest card amount the keypad takes (fen): the server holds bigger payments
    # (``kiosk_max_payment``, ¥5000 by default) instead of crediting them.
    card_max_fen: int = 500_000
    # "Reprint the last payment" is offered only this long after it was made: the
    # customer who just walked away without the receipt, not the one before.
    last_payment_window_s: float = 300.0

    def __post_init__(self) -> None:
        # No "never": a kiosk without an idle timeout leaves a customer's session open.
        if not 1 <= self.idle_timeout_s <= 3600:
            raise ConfigError("the idle timeout must be 1-3600 seconds")
        if self.idle_grace_s < 0 or self.escrow_poll_ms < 100 or self.card_max_fen < 1:
            raise ConfigError("invalid touch UI settings")
