"""One TensorRT logger and one retained CUDA primary context per process, shown with stand-in modules.

The stand-ins have the shape of the ``tensorrt`` and ``pycuda.driver`` APIs these modules use;
the real ones are exercised by the gpu-marked tests.
"""

import types

import pytest

import screening.backends.cuda_context as cuda_context
import screening.engines.trt_logger as trt_logger


class Severity:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)


class ILogger:
    Severity = Severity

    def __init__(self) -> None:
        pass


FAKE_TRT = types.SimpleNamespace(ILogger=ILogger)


@pytest.fixture
def fresh_logger(monkeypatch):
    monkeypatch.setattr(trt_logger, "_logger", None)  # restored afterwards: a real one may follow
    monkeypatch.setattr(trt_logger, "_sink", None)


def test_one_logger_per_process(fresh_logger):
    assert trt_logger.tensorrt_logger(FAKE_TRT) is trt_logger.tensorrt_logger(FAKE_TRT)


def test_a_build_routes_messages_to_its_log_and_stderr_gets_them_otherwise(fresh_logger, capsys):
    logger = trt_logger.tensorrt_logger(FAKE_TRT)
    kept = []
    with trt_logger.routed_to(lambda severity, message: kept.append((severity, message))):
        logger.log(Severity.WARNING, "Detected layernorm\n overflow")
    logger.log(Severity.ERROR, "no kernel")
    logger.log(Severity.INFO, "chatter")
    assert kept == [("warning", "Detected layernorm\n overflow")]
    assert capsys.readouterr().err == "TensorRT error: no kernel\n"


class Context:
    def __init__(self, stack: list) -> None:
        self.stack = stack

    def push(self) -> None:
        self.stack.append(self)

    def pop(self) -> None:
        self.stack.pop()


def fake_cuda(calls: list, stack: list):
    context = Context(stack)

    class Device:
        def __init__(self, ordinal: int) -> None:
            calls.append(f"Device({ordinal})")

        def retain_primary_context(self) -> Context:
            calls.append("retain")
            return context

    return types.SimpleNamespace(init=lambda: calls.append("init"), Device=Device)


def test_the_primary_context_is_retained_once_and_the_stack_is_left_as_found(monkeypatch):
    monkeypatch.setattr(cuda_context, "_primary", None)
    calls, stack = [], []
    cuda = fake_cuda(calls, stack)
    for _ in range(3):  # three backends entered and left in one process
        with cuda_context.current(cuda_context.primary_context(cuda)) as context:
            assert stack == [context]
        assert stack == []
    assert calls == ["init", "Device(0)", "retain"]
    with pytest.raises(ValueError):
        with cuda_context.current(cuda_context.primary_context(cuda)):
            raise ValueError("engine failed to load")
    assert stack == []
