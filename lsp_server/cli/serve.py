"""``ghostpilot serve``: the language server over stdio (default) or TCP.

Only JSON-RPC reaches stdout: the real stdout is kept for the protocol and file
descriptor 1 is pointed at stderr, so a stray print (ours, a library's, or llama.cpp's
C code) can never corrupt the stream. Frames are read by ``lsp_server/protocol.py``;
a message over ``--max-message-mb`` is dropped with a clear error. The exit code is 0
after ``shutdown`` then ``exit``, 1 for ``exit`` without ``shutdown``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from lsp_server.cli import positive_int
from lsp_server.config import Settings, merge

# lsp_server.protocol.DEFAULT_MAX_MESSAGE_BYTES in MiB, written out so that ``ghostpilot
# --help`` does not import lsprotocol (seconds on a busy machine); a test keeps them equal.
DEFAULT_MAX_MESSAGE_MB = 64


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("serve", help="run the language server (stdio by default)")
    parser.add_argument("--stdio", action="store_true", help="speak LSP over stdio (default)")
    parser.add_argument("--tcp", metavar="HOST:PORT", help="serve LSP over a TCP socket")
    parser.add_argument("--model", help="GGUF path or registry name (clients may override)")
    parser.add_argument("--n-threads", type=int)
    parser.add_argument("--n-gpu-layers", type=int, help="layers to offload to a GPU (-1: all; needs a GPU build, see README)")
    parser.add_argument(
        "--max-message-mb", type=positive_int, default=DEFAULT_MAX_MESSAGE_MB,
        help="drop (with an error) any client message larger than this many MiB (default: %(default)s)",
    )
    parser.add_argument("--log-file", help="also write the log to this file")
    parser.add_argument("--log-level", default=os.environ.get("GHOSTPILOT_LOG", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.set_defaults(func=run)



class AnsweredErrorFilter(logging.Filter):
    """Drops pygls' record of a request answered with a JSON-RPC error (a position past
    the end, an unknown command): pygls logs each with ERROR and a traceback, and the
    server already logs it in one line ("request failed: ..."). Any other exception, an
    internal error among them, keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pygls.exceptions import JsonRpcException

        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, JsonRpcException)


def configure_logging(level: str, log_file: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=getattr(logging, level), handlers=handlers,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pygls").setLevel(max(logging.WARNING, getattr(logging, level)))
    rpc = logging.getLogger("pygls.protocol.json_rpc")
    if not any(isinstance(f, AnsweredErrorFilter) for f in rpc.filters):
        rpc.addFilter(AnsweredErrorFilter())


def protect_stdout() -> tuple[object, object]:
    """Keep the real stdout for JSON-RPC and send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return sys.stdin.buffer, os.fdopen(protocol_fd, "wb", buffering=0)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_file)
    raw = {"model": args.model, "nThreads": args.n_threads, "nGpuLayers": args.n_gpu_layers}
    defaults, problems = merge(Settings(), {k: v for k, v in raw.items() if v is not None})
    for problem in problems:
        logging.getLogger("ghostpilot").warning("%s", problem)
    from lsp_server.server import create_server

    server = create_server(defaults)
    server.max_message_bytes = args.max_message_mb * 2**20
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not host or not port.isdigit():
            print(f"ghostpilot serve: --tcp expects HOST:PORT, got {args.tcp!r}", file=sys.stderr)
            return 2
        server.start_tcp(host, int(port))
        return server.exit_code
    stdin, stdout = protect_stdout()
    server.start_io(stdin, stdout)  # type: ignore[arg-type]
    return server.exit_code
