"""The console's envelope index over a real file spool: `Queue.ids` in order, every envelope
read once (a whole listing for many new messages, one `show` each for a few), and messages
that left forgotten."""

from __future__ import annotations

from pathlib import Path

from gateway.console.index import EnvelopeIndex
from gateway.queue.model import Arrival
from gateway.spool import FileQueue


async def store(queue: FileQueue, index: int) -> str:
    return await queue.store(
        Arrival(
            mail_from=f"scanner{index % 3}@contoso.com",
            rcpt_tos=("alice@contoso.com",),
            client="printers",
            peer="10.0.0.7",
            listener="lan",
        ),
        f"Subject: {index}\r\n\r\nbody\r\n".encode(),
    )


async def test_ids_and_the_envelope_index(tmp_path: Path) -> None:
    queue = FileQueue(tmp_path / "spool", min_free_space=0)
    await queue.open()
    try:
        stored = [await store(queue, n) for n in range(205)]
        ids = await queue.ids()
        assert [queue_id for queue_id, _ in ids] == sorted(stored)
        assert {state for _, state in ids} == {"queue"}
        assert await queue.hold(stored[0], {"reason": "test"}, state="queue")
        assert await queue.ids("hold") == [(stored[0], "hold")]

        index = EnvelopeIndex(queue)
        known = await index.envelopes(await queue.ids())  # 205 new: one listing
        assert len(known) == 205
        assert known[stored[4]].mail_from == "scanner1@contoso.com"
        assert known[stored[4]].peer == "10.0.0.7"
        newest = await store(queue, 205)
        assert await queue.delete(stored[1])
        known = await index.envelopes(await queue.ids())  # one new (show), one gone
        assert newest in known and stored[1] not in known and len(known) == 205
        assert known[newest].rcpt_tos == ("alice@contoso.com",)
    finally:
        await queue.close()
