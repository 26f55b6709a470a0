"""Benchmark of the platform on PostgreSQL as a department runs it: several workers, the SDK's batches, a growing table.

    python benchmarks/platform_postgres.py [--db URL] [--records N] [--every N] [--workers N] [--batch N]
                                           [--runs N] [--query-only] [--shared-buffers SIZE]
                                           [--pg-setting NAME=VALUE ...]

1. Database: ``--db postgresql://...``, or a temporary PostgreSQL started
   here (Debian's ``postgresql`` package, as the tests start it, but durable:
   ``fsync`` and synchronous commits on, ``shared_buffers`` 1 GB, or
   ``--shared-buffers``; ``--pg-setting`` adds any other setting).
2. Ingest: ``--workers`` (default 2) ``perf-sdk serve --db URL`` processes on
   the one database, and as many client processes, each posting to its own
   worker, one batch at a time, the next batch none has taken, what the SDK's
   uploader posts: batches of 5,000 transaction records
   through the SDK's ``HttpTransport`` (compact JSON, gzip), each record with a
   random 32-hex ``_id`` and a ``_timestamp`` in order through 2025. Clients
   are processes so that building batches is not what is measured. Every
   ``--every`` records stored (default 1,000,000) it prints the rate over that
   slice, the CPU time per record of the workers, of PostgreSQL (its server
   processes, when it was started here; its system time apart) and of the
   clients (steadier than the rate on a shared machine, and where the time
   goes), the workers' RSS, and PostgreSQL's WAL bytes, full-page images and
   pages read into shared buffers (new pages included) per record, and
   checkpoints begun: the curve
   shows whether ingest slows as the table grows, and why.
3. Query: the requests ``perf-sdk kpis --period quarter`` and ``--period
   month`` send for 2025 (``benchmarks/platform.py``'s measurement, reused),
   each timed ``--runs`` times over HTTP, answers checked against the count.
4. Size: the tables' and indexes' size on disk, per record.

The machine's other load makes the figures noisy: compare runs made back to back.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder leads sys.path, and benchmarks/platform.py would shadow the standard library's module.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.platform_db starts the temporary server

import argparse
import importlib.util
import multiprocessing
import os
import resource
import time
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _bench_platform() -> ModuleType:
    """``benchmarks/platform.py`` under another name (its server, batches and query timing)."""
    spec = importlib.util.spec_from_file_location("bench_platform", ROOT / "benchmarks" / "platform.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _client(url: str, first: int, n: int, size: int, taken: Any, done: Any) -> None:
    """Post batches to this client's worker, each time the next batch no client has taken yet (in time order).

    Taking batches from one shared counter keeps every worker busy until the
    last batch: fixed shares (every ``workers``-th batch) let one client
    finish a few seconds early on a busy machine, and the last slice then
    measured one worker alone. The bodies come gzipped from
    ``benchmarks/platform.py``'s builder, so they are posted as they are,
    with the headers the SDK's transport sends.
    """
    bp = _bench_platform()
    import httpx

    headers = {"Authorization": f"Bearer {bp.TOKEN}", "Content-Type": "application/json", "Content-Encoding": "gzip"}
    total = first + n
    with httpx.Client(base_url=url, timeout=600, headers=headers) as client:
        while True:
            with taken.get_lock():
                start = first + taken.value * size
                taken.value += 1
            if start >= total:
                return
            for count, body in bp._batches(start, min(size, total - start), total, size):
                client.post(f"/data/{bp.GROUP}/{bp.TYPE}", content=body).raise_for_status()
                with done.get_lock():
                    done.value += count


def _cpu(pid: int) -> tuple[float, float]:
    """CPU seconds ``pid`` has used: user + system, and system alone (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, int(fields[12]) / tick


def _postgres_cpu(postmaster: int | None) -> tuple[float, float]:
    """CPU seconds of the PostgreSQL server, and its system time alone: the postmaster and every process
    it started, alive now.

    Backends live as long as the workers' pooled connections, so differences
    over a slice are what those connections, the checkpointer and the WAL
    writer spent (0 with ``--db``: the server is not ours to look at). The
    system time is mostly the kernel's page cache taking the WAL and new
    pages of the tables (``write``).
    """
    if postmaster is None:
        return 0.0, 0.0
    total, system = _cpu(postmaster)
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
            system += (int(fields[12]) + int(fields[14])) / tick
    return total, system


def _server_stats(url: str) -> tuple[int, int, int, int]:
    """PostgreSQL's counters: WAL bytes, full-page images, pages read into shared buffers (a new page
    counts), checkpoints. Differences over a slice say whether it wrote more WAL per record, began a
    checkpoint (whose full-page images random ``_id``s multiply) or read evicted pages back."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT w.wal_bytes, w.wal_fpi, d.blks_read, b.checkpoints_timed + b.checkpoints_req "
            "FROM pg_stat_wal AS w, pg_stat_bgwriter AS b, pg_stat_database AS d "
            "WHERE d.datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def ingest(
    servers: list[Any], n: int, every: int, size: int, already: int, postmaster: int | None, url: str
) -> list[tuple[int, float]]:
    """Post ``n`` records through one client process per worker; ``(stored, rate)`` every ``every`` records.

    Each line also splits the CPU time per record between the workers, PostgreSQL
    (when it was started here) and the clients: steadier than the rate on a
    shared machine, and it says where the time goes.
    """
    ctx = multiprocessing.get_context("spawn")
    done, taken = ctx.Value("q", 0), ctx.Value("q", 0)
    clients = [ctx.Process(target=_client, args=(s.url, already, n, size, taken, done), daemon=True) for s in servers]
    for client in clients:
        client.start()
    curve: list[tuple[int, float]] = []
    started = mark = time.perf_counter()
    at_mark, next_mark = 0, every

    def cpu() -> tuple[float, float, float, float]:
        # A client is in /proc until it is reaped, then in this process's children's usage: reap first
        # (``exitcode`` does), then read both, so that none is counted twice or not at all.
        unreaped = [c.pid for c in clients if c.exitcode is None and c.pid is not None]
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        clients_cpu = sum(_cpu(pid)[0] for pid in unreaped) + reaped.ru_utime + reaped.ru_stime
        return sum(s.cpu() for s in servers), *_postgres_cpu(postmaster), clients_cpu

    cpu_mark = cpu()
    stats_mark = _server_stats(url)
    while True:
        time.sleep(0.2)
        posted = done.value
        finished = not any(c.is_alive() for c in clients)
        if posted >= next_mark or (finished and posted > at_mark):
            now = time.perf_counter()
            rate = (posted - at_mark) / (now - mark)
            rss = sum(s.memory("VmRSS") for s in servers) / 2**20
            curve.append((already + posted, rate))
            spent = cpu()
            us = [(b - a) / (posted - at_mark) * 1e6 for a, b in zip(cpu_mark, spent, strict=True)]
            stats = _server_stats(url)
            wal, fpi, read, checkpoints = (b - a for a, b in zip(stats_mark, stats, strict=True))
            print(
                f"  {already + posted:>12,} stored  {rate:>9,.0f} rec/s  CPU us/rec: workers {us[0]:5.1f}, "
                f"PostgreSQL {us[1]:5.1f} (system {us[2]:4.1f}), clients {us[3]:4.1f}  workers' RSS {rss:7.1f} MiB  "
                f"({now - started:7.1f} s)  WAL {wal / (posted - at_mark):4.0f} B/rec, "
                f"{fpi * 1000 / (posted - at_mark):4.1f} FPI and {read * 1000 / (posted - at_mark):4.1f} "
                f"pages read per 1000 rec, {checkpoints} checkpoints",
                flush=True,
            )
            mark, at_mark, cpu_mark, stats_mark = now, posted, spent, stats
            while next_mark <= posted:
                next_mark += every
        if finished:
            break
    for client in clients:
        client.join()
        if client.exitcode != 0:
            raise RuntimeError(f"a client failed (exit {client.exitcode})")
    return curve


def table_sizes(url: str) -> dict[str, int]:
    """Each table's size with its indexes and TOAST, and the records table's indexes apart."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
            "WHERE relname IN ('records', 'rollup', 'rollup_day', 'datasets', 'wide_fields') "
            "UNION ALL SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = 'records'::regclass"
        ).fetchall()
    return {name: int(size) for name, size in rows}


def run(args: argparse.Namespace, url: str, postmaster: int | None = None) -> None:
    bp = _bench_platform()
    import httpx

    servers = [bp.Server(url) for _ in range(args.workers)]
    try:
        with httpx.Client(base_url=servers[0].url, timeout=600) as client:
            already = bp._stored(client)
        if not args.query_only:
            print(
                f"ingest: {args.records:,} records, batches of {args.batch:,} (gzip, random _id), "
                f"{args.workers} perf-sdk serve workers on PostgreSQL, one client process each"
                + (f"; the database already holds {already:,}" if already else "")
            )
            start = time.perf_counter()
            curve = ingest(servers, args.records, args.every, args.batch, already, postmaster, url)
            elapsed = time.perf_counter() - start
            rates = [rate for _, rate in curve]
            print(
                f"ingest: {args.records / elapsed:,.0f} rec/s overall; slices from {min(rates):,.0f} "
                f"to {max(rates):,.0f} rec/s (last/first {rates[-1] / rates[0]:.2f})"
            )
        with httpx.Client(base_url=servers[0].url, timeout=600) as client:
            stored = bp._stored(client)
        bp.query_times(servers[0], args.runs, stored)
        peaks = ", ".join(f"{s.memory('VmHWM') / 2**20:.0f}" for s in servers)
        print(f"workers' peak RSS: {peaks} MiB")
    finally:
        for server in servers:
            server.close()
    sizes = table_sizes(url)
    total = sum(size for name, size in sizes.items() if not name.startswith("records_"))
    print(
        "database size: "
        + ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in sorted(sizes.items()))
        + f"; {total / max(stored, 1):,.0f} bytes per record in all, of which the _id index "
        f"{sizes.get('records_pkey', 0) / max(stored, 1):,.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--db", help="postgresql:// URL (default: a temporary PostgreSQL started here)")
    parser.add_argument("--records", type=int, default=10_000_000, help="records to ingest (default 10,000,000)")
    parser.add_argument("--every", type=int, default=1_000_000, help="print the rate every N records stored")
    parser.add_argument("--workers", type=int, default=2, help="perf-sdk serve processes (default 2)")
    parser.add_argument("--batch", type=int, default=5_000, help="records per request (the SDK's default 5,000)")
    parser.add_argument("--runs", type=int, default=7, help="runs of each query (the median is reported)")
    parser.add_argument("--query-only", action="store_true", help="only time the queries over --db")
    parser.add_argument(
        "--shared-buffers",
        help="the temporary server's shared_buffers (default the tests' 1GB; e.g. 6GB to hold the whole database)",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the temporary server (repeatable), e.g. autovacuum=off to see what vacuum costs",
    )
    args = parser.parse_args()
    if args.query_only and not args.db:
        parser.error("--query-only needs --db")
    if args.db and (args.pg_setting or args.shared_buffers):
        parser.error("--pg-setting and --shared-buffers are for the temporary server: not with --db")
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    import perf_sdk

    print(f"perf_sdk from {Path(perf_sdk.__file__).parent}; {os.cpu_count()} CPUs")
    if args.db:
        run(args, args.db)
        return 0
    import psycopg
    from tests.platform_db import postgres_server

    with postgres_server(durable=True) as server:
        if isinstance(server, str):
            print(f"cannot start PostgreSQL: {server}", file=sys.stderr)
            return 2
        url = server.database("perf_sdk_bench")
        if args.shared_buffers or args.pg_setting:
            # The tests' durable settings, but this shared_buffers (a command-line setting outranks ALTER SYSTEM).
            options = (
                f"-p {server.port} -k {server.tmp} -c listen_addresses='' -c max_connections=200 "
                f"-c shared_buffers={args.shared_buffers or '1GB'} -c max_wal_size=8GB -c checkpoint_timeout=15min"
            ) + "".join(f" -c {setting}" for setting in args.pg_setting)
            log = str(server.tmp / "log")
            server._run(
                str(server.bin_dir / "pg_ctl"), "-D", str(server.data), "-o", options, "-l", log, "-w", "restart"
            )
        with psycopg.connect(url) as conn:
            row = conn.execute("SHOW shared_buffers").fetchone()
        buffers = row[0] if row else "?"
        extra = "".join(f", {setting}" for setting in args.pg_setting)
        print(
            f"PostgreSQL: temporary, durable (fsync and synchronous commit on, shared_buffers {buffers}{extra}), {url}"
        )
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        run(args, url, postmaster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
