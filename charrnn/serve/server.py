"""`charrnn serve`'s server: uvicorn running the app, with a shutdown that lets streams end.

SIGTERM (or Ctrl-C) stops taking connections and requests, gives the live streams
ServeConfig.grace seconds to finish, ends those still going with finish_reason "length", and
exits 0; a second Ctrl-C quits at once.
"""
import contextlib
import ipaddress
import signal
import threading

import uvicorn

from ..compiling import Compiling
from ..errors import UsageError
from .app import create_app

SHUTDOWN_SLACK_S = 5.0  # after the grace: time for the ended streams' last bytes to go out


def loopback(host):
    """Whether host listens on this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(runs, limits, api_key=None, say=print):
    """Serve runs (run directories or checkpoints) on limits.host:limits.port until SIGTERM
    or Ctrl-C. say: where the lines for people go."""
    if not loopback(limits.host) and not api_key:
        say(f"warning: listening on {limits.host} without an API key: anyone who can reach "
            "this machine can use the models; give --api-key (or CHARRNN_API_KEY)")
    with Compiling("the serving loop", say):
        app = create_app(runs, limits, api_key)
    config = uvicorn.Config(app, host=limits.host, port=limits.port, log_level="warning",
                            access_log=False, lifespan="on",
                            timeout_graceful_shutdown=limits.grace + SHUTDOWN_SLACK_S)
    server = _Server(config, app.state.service, limits.grace, say)
    server.run()
    if not server.started:
        raise UsageError(f"could not listen on {limits.host}:{limits.port} (see above); "
                         "pick another --port or --host")


class _Server(uvicorn.Server):
    """uvicorn's server, whose SIGTERM and SIGINT drain the engines first and whose exit,
    after a signal, is a normal one (status 0)."""

    def __init__(self, config, service, grace, say):
        super().__init__(config)
        self.service, self.grace, self.say = service, grace, say

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig, frame):
        if not self.should_exit:
            self.say(f"shutting down: live streams have {self.grace:g} s to finish")
            self.service.drain(self.grace)
        super().handle_exit(sig, frame)

    async def startup(self, sockets=None):
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            names = ", ".join(self.service.engines)
            self.say(f"serving {names} at http://{host}:{port} (a page to try them at /); "
                     "SIGTERM or Ctrl-C stops")
