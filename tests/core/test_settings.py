import pytest

from teleserve.core.i18n import normalize_locale, translate
from teleserve.core.settings import DEV_DATA_KEY, Mode, Settings


def test_production_refuses_default_secrets():
    with pytest.raises(RuntimeError, match="TELESERVE_SECRET_KEY"):
        Settings(mode=Mode.production).check()


def test_production_with_real_secrets_starts():
    Settings(
        mode=Mode.production, secret_key="s" * 40, data_key="a2V5" * 11, pepper="p" * 20
    ).check()


def test_demo_accepts_defaults():
    Settings(mode=Mode.demo).check()
    assert Settings(mode=Mode.demo).data_key == DEV_DATA_KEY


def test_environment_and_toml(tmp_path, monkeypatch):
    config = tmp_path / "teleserve.toml"
    config.write_text('timezone = "Asia/Urumqi"\ncurrency = "HKD"\n')
    monkeypatch.setenv("TELESERVE_CONFIG", str(config))
    monkeypatch.setenv("TELESERVE_CURRENCY", "MOP")
    s = Settings()
    assert s.timezone == "Asia/Urumqi"  # from the file
    assert s.currency == "MOP"  # the environment wins over the file
    assert s.mode is Mode.production and s.default_locale == "zh-CN"


@pytest.mark.parametrize(
    ("header", "locale"),
    [(None, "zh-CN"), ("en-US,en;q=0.9", "en"), ("zh-TW", "zh-CN"), ("fr", "zh-CN")],
)
def test_locale_negotiation(header, locale):
    assert normalize_locale(header) == locale


def test_translate_formats_params():
    assert translate("Not an amount: {value}", "en", value="x") == "Not an amount: x"


def test_reuse_port_is_refused_on_sqlite(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", gateway_reuse_port=True)
    with pytest.raises(RuntimeError, match="REUSE_PORT"):
        settings.check()
    pg = Settings(database_url="postgresql+psycopg://u@h/db", gateway_reuse_port=True, mode="demo")
    pg.check()  # several gateway processes on PostgreSQL: allowed
