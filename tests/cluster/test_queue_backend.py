"""The PostgreSQL queue behind the gateway: the same promises as the file spool."""

from __future__ import annotations

from pathlib import Path

from gateway.emulator import Emulator
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import make_config, run_gateway
from tests.support.postgres import cluster_spool


async def test_a_message_goes_through_the_database(
    tmp_path: Path, emulator: Emulator, pg_dsn: str
) -> None:
    config = make_config(tmp_path, emulator, spool=cluster_spool(tmp_path, pg_dsn))
    async with run_gateway(config) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        [event] = await gateway.delivered(1)
    [delivered] = emulator.delivered()
    assert delivered.mime.endswith(MESSAGE.split(b"\r\n\r\n", 1)[1])
    assert event.tenant == "contoso"
