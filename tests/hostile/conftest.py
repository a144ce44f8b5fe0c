"""The hostile-input suite: one module per surface, each fed a table of hostile inputs.

For every input: the daemon (or the component) keeps running, the input ends as a clear refusal or a
recorded failure naming the field, the next valid input is still delivered, and no secret or identity
reaches a log line. The broker, simulator and daemon fixtures are the integration suite's own."""

from tests.integration.conftest import portal_url, start_daemon, transport

__all__ = ["portal_url", "start_daemon", "transport"]
