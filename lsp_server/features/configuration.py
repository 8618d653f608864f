"""initialize / initialized / workspace/didChangeConfiguration: settings, then the model.

Settings merge defaults < initializationOptions < workspace/configuration (section
``ghostpilot``) < didChangeConfiguration. The model starts loading once the client is
initialized, with $/progress while it loads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types

# At run time, not under TYPE_CHECKING: pygls resolves handlers' annotations
# (typing.get_type_hints). No cycle: server.py imports features only in create_server().
from lsp_server.server import GhostpilotServer

log = logging.getLogger(__name__)
SECTION = "ghostpilot"


def position_encoding(ls: GhostpilotServer) -> str:
    """The position encoding agreed in ``initialize`` (pygls chose it from the client's)."""
    value = getattr(ls.workspace, "position_encoding", None) or "utf-16"
    # pygls gives its default as a PositionEncodingKind, whose str() is the member's name
    return str(getattr(value, "value", value))


async def pull_configuration(ls: GhostpilotServer) -> None:
    workspace = ls.client_capabilities.workspace
    if not (workspace and workspace.configuration):
        return
    try:
        result = await asyncio.wait_for(
            ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
            ),
            timeout=5,
        )
    except Exception as error:  # a client that cannot answer keeps the other sources
        log.warning("workspace/configuration failed: %s", error)
        return
    if result and result[0] is not None:
        ls.apply_settings(result[0], "workspace/configuration")


def setup(server: GhostpilotServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: GhostpilotServer, params: types.InitializeParams) -> None:
        ls.documents.encoding = position_encoding(ls)
        if params.initialization_options is not None:
            ls.apply_settings(params.initialization_options, "initializationOptions")

    @server.feature(types.INITIALIZED)
    async def initialized(ls: GhostpilotServer, params: types.InitializedParams) -> None:
        ls.loop = asyncio.get_running_loop()
        # Start loading before the configuration round trip, so that no request can
        # reach the worker ahead of the model; a pulled setting that changes the model
        # queues a reload.
        ls.start_model_load()
        await pull_configuration(ls)
        await ls.call_listeners(ls.initialized_listeners, ls)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: GhostpilotServer, *args: Any) -> None:
        ls.call_each(ls.shutdown_listeners, failure="shutting down a feature failed")
        ls.worker.shutdown()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: GhostpilotServer, params: types.DidChangeConfigurationParams) -> None:
        settings = params.settings
        if isinstance(settings, dict) and settings:
            ls.apply_settings(settings, "didChangeConfiguration")
        else:
            await pull_configuration(ls)
