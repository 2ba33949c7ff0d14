"""`manage.py demo` itself: what it prints, and that it leaves nothing running however it is stopped."""

import signal
import socket
import subprocess

from tests.smoke_sqlite.demo import ROOT, Demo, alive, children_of, port_free
from tests.smoke_sqlite.people import Reviewer


def test_the_banner_names_the_test_cards_the_logins_and_the_review_queue(demo):
    banner = demo.output().split("Stop:")[0]

    # The three cards the README promises, the merchant's and the reviewer's logins, and where to use them
    for printed in [
        "4242 4242 4242 4242",
        "4000 0025 0000 3155",
        "3-D Secure",
        "4000 0000 0000 0341",
        "declined",
        f"{demo.url}/admin/",
        "merchant / merchant-demo-pass",
        f"{demo.url}/review/",
        "reviewer / reviewer-demo-pass",
        f"localstripe at {demo.stripe_url}",
        f"fake PayPal at http://127.0.0.1:{demo.ports['paypal']}",
    ]:
        assert printed in banner, f"{printed!r} is not in the banner:\n{banner}"

    # And the reviewer login it prints opens the review queue
    assert "Held orders" in Reviewer(demo.url).get("/review/").text


def test_a_demo_stopped_by_sigterm_sighup_or_ctrl_c_leaves_nothing_running_and_starts_again(tmp_path):
    # SIGTERM used to end the demo without stopping localstripe, whose port then failed the next `make demo`
    demo = Demo(tmp_path)
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            # Given a running demo (started again on the same ports after the signal before)
            demo.start()
            children = children_of(demo.process.pid)
            assert children, "localstripe runs as a child of the demo"

            # When it gets the signal
            demo.signal(signum)

            # Then localstripe has stopped and every port the demo used is free
            name = signal.Signals(signum).name
            assert [pid for pid in children if alive(pid)] == [], f"after {name} the demo's children still run"
            busy = {what: port for what, port in demo.ports.items() if not port_free(port)}
            assert not busy, f"after {name} these ports are still taken: {busy}"
    finally:
        demo.stop()


def test_a_demo_whose_port_is_taken_says_so_and_leaves_nothing_running(tmp_path):
    # Given something listening on the demo's shop port (a demo that was not stopped, say)
    demo = Demo(tmp_path)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", demo.ports["shop"]))
        taken.listen()

        # When the demo starts
        command, env = demo.command()
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    # Then it says why it cannot, and started nothing that would hold localstripe's port
    assert result.returncode != 0
    assert f"In use on 127.0.0.1: port {demo.ports['shop']} (the shop)" in result.stderr
    assert port_free(demo.ports["stripe"])
