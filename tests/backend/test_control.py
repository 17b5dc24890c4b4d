"""Stop requests: lines on a stream, and signals (the first Ctrl-C asks, a second one interrupts)."""

from __future__ import annotations

import io
import os
import signal

import pytest

from nfsd_backend.control import EXPORT, STOP, RunControl


def test_the_first_request_wins_and_end_of_stream_means_stop():
    control = RunControl()
    control.watch_stream(io.StringIO("hello\nexport\nstop\n")).join(timeout=5)
    assert control.requested == EXPORT
    control = RunControl()
    control.watch_stream(io.StringIO("")).join(timeout=5)
    assert control.requested == STOP


def test_first_ctrl_c_asks_to_stop_a_second_interrupts_and_the_old_handler_returns():
    before = signal.getsignal(signal.SIGINT)
    control = RunControl()
    with control.handling_signals():
        os.kill(os.getpid(), signal.SIGINT)
        assert control.requested == STOP  # no KeyboardInterrupt: the run finishes its step
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_asks_to_stop():
    control = RunControl()
    with control.handling_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        assert control.requested == STOP
