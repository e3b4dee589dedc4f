"""The report's account of what runs and how each figure is measured (``docs/benchmarks.md``)."""

METHOD = """\
## What runs

- **chatgate**: `chatgate serve` as operators run it (production tier, memory store and
  broker, `CHATGATE_LOG_LEVEL=WARNING`, no compression), with the bench agent
  (`bench/bench_agent.py`: the demo agent, plus `lean`, `stream N` and `deltas N`). Rate and
  per-user limits are raised (`CHATGATE_RATE_LIMIT_MESSAGES` 100,000,000 a second) so that
  load, not policy, decides; every load socket is its own user. Tokens go in
  `Authorization: Bearer`; each load user's token is minted once and reused when it
  reconnects, as a client does, so the handshake figure is the server's cost, not PyJWT's.
- **chatgate, SQLite store**: the same, with `CHATGATE_DATABASE_URL=sqlite:///...` (a file in
  the run's scratch directory).
- **chatgate, PostgreSQL store**: the same on the local PostgreSQL
  (`postgresql://postgres@127.0.0.1:5432/test?search_path=<schema>`), a fresh schema for each
  server process, dropped when it stops.
- **chatgate, PostgreSQL store + Redis broker**: the same, with
  `CHATGATE_BROKER_URL=redis://127.0.0.1:6379/0` under a fresh `CHATGATE_BROKER_KEY_PREFIX`.
  The persisted servers run the scenarios that write events (chat round trips, event and delta
  delivery, resume) and the one-socket latency.
- **python-socketio** (`bench/server_socketio.py`): the same chat round trip written as its
  users write it, on the same uvicorn stack: JWT checked in `connect`, one room per user,
  `message_ack` then the agent's events (the answer's text deltas among them) in chatgate's
  envelope, from the same agent. Its sockets authenticate in the namespace CONNECT packet.
- **python-socketio, lean** (`bench/server_socketio_lean.py`): python-socketio written as
  cheaply as a user would: JWT verified in `connect`, a room per user, `message_ack` then five
  events emitted straight (no agent, no session store, no history, nothing persisted). It
  sends 6 frames per chat round trip where chatgate sends 9, so ratios against it lean its way.
- **bare uvicorn** (`bench/server_uvicorn.py`): a Starlette WebSocket endpoint on uvicorn
  (websockets-sansio, uvloop, httptools), no auth, no agent: the framework floor.
- **picows** (`bench/server_picows.py`): a raw picows server on uvloop: the limit reference.
- bare uvicorn and picows greet each socket with a `connection_established`-shaped frame, answer
  a chat message with chatgate's nine frames pre-encoded (the ack, then `agent_started`,
  thinking, the tool's two events, the answer in three text deltas and `agent_completed`) and
  `stream N` with the frames of an N-event run: the cost of moving the same bytes, no logic.

Load comes from separate processes (`bench/loadgen.py`), on uvloop with picows clients that
recognise frames by prefix and never parse them, each socket closed-loop (next request when
the previous one completed), 127.0.0.1 only, every loop bounded in count and time.
A chat round trip is `user_message` (a new thread each time) through `agent_completed`;
latencies are measured from the send to the arrival of `agent_started` and `agent_completed`.
**In one thread per socket** (`thread100`, chatgate on each store only): the same, but each
socket's messages after its first name the thread its first one opened, as a real client's
conversation does: the run reads the thread's recent history (up to 100 messages) and the
thread's row is updated, not created.
**Parity round trips** (`parity100`, reported beside `chat100`, never instead of it): the same
closed loop with the message `lean`, which the bench agent answers with exactly what the lean
python-socketio server sends for any message: `agent_started`, thinking, the calculator's
`tool_executing` and `tool_completed` (chatgate adds their `tool_call_id`), and
`agent_completed` with the answer text; no deltas, no calculator run. Both servers then send
an ack and five events per turn; chatgate still stores the user message, the run, each event
(before it goes out) and the answer. It runs on chatgate and the lean server only.
Event delivery counts every frame of `stream 100` runs reaching the clients. Idle memory is
the growth of the server's RSS after a warm-up, divided by the authenticated sockets it holds.

**One socket**: a single socket, closed loop, sends `what is 6*7?` on an idle server, turn
after turn for the whole window; p50 and p90 of the time from the send to `agent_completed`.

**Handshakes, and who set the pace**: besides handshakes per second, the load generator's CPU
seconds inside the window and the server's over the whole job, each per second of wall time.
A side near 1.0 was busy all the time; a generator near 1.0 means the figure is the
generator's, and the instruction counts below (server only, noise-free) decide the target.

**Crowd**: chatgate alone holds idle authenticated sockets up to 50,000. One source address
has about 28,000 ephemeral ports toward one server port, so the clients bind to 127.0.0.2,
127.0.0.3, ... (all of 127.0.0.0/8 is loopback), 20,000 sockets per address. The harness raises
its open-file limit (children inherit it) up to 200,000 where it may (raising the hard limit
needs `CAP_SYS_RESOURCE`); a step above the limit is measured at the largest step that fits,
and the notes say so. The kernel's share is the growth of `Slab` in /proc/meminfo per
connection: over loopback it holds both ends, so the server's sockets are about half of it.

Streamed answers are measured on chatgate alone, once on each store. Delta delivery counts the
`agent_text_delta` frames reaching the clients from `deltas 200` runs (the bench agent yields
200 deltas with no pause, then `agent_completed`), closed loop per socket. Resume: one socket
has a `deltas 10000` answer produced; then fresh sockets of the same user each send `resume`
after event 0 and read until `resume_complete` (deltas arrive merged); the figure is the
median time from the send to `resume_complete`, and the frames one replay brings.
A replay merges the answer's deltas (a merged `agent_text_delta` carries at most 32,768 code
points), so 10,000 deltas come back as two frames between `agent_started` and
`agent_completed`. The bench agent awaits `asyncio.sleep(0)` after every 1,000 deltas: on the
memory store nothing else in a run awaits, and an in-process agent yielding thousands of deltas
at once would fill the socket's 1 MiB send queue before the socket could write (`4102`); a
model streaming over the network never does that. The 200-delta runs never pause.

Timed figures on this kind of machine move by a third from run to run. For a figure the noise
does not move, `.venv/bin/python -m bench.instructions --op handshakes` (or `--op chat`, or
`--op parity`) counts with callgrind the instructions each server executes per operation, and
their ratio. With `--sockets 20` the round trips come from 20 sockets at once, so that the
stores' group commits form batches as under load; the full run counts chat round trips so on
each store, and the targets table gives the store ratios from those counts too.

To see where chatgate's time goes under one of these loads (py-spy comes with the bench extra):
`.venv/bin/python -m bench.profiling --scenario chat` (also `handshakes`, `echo`, `chat1000`,
`stream`; `--server uvicorn` profiles a baseline the same way).
"""
