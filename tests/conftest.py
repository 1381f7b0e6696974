"""Shared test setup: offline hub, CPU only, and small shared fixtures."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# OpenVINO's converter posts usage events from a forked process unless it sees CI=true; a fork
# beside Ray's threads once deadlocked in getaddrinfo and pytest waited on it forever at exit
os.environ.setdefault("CI", "true")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits_workload():
    from accelkit.workloads.digits import DigitsWorkload

    return DigitsWorkload()


@pytest.fixture(scope="session")
def digits_model(digits_workload):
    return digits_workload.build_model()


@pytest.fixture(scope="session")
def minilm_workload():
    from accelkit.workloads.minilm import MiniLMWorkload

    return MiniLMWorkload()


@pytest.fixture(scope="session")
def minilm_model(minilm_workload):
    return minilm_workload.build_model()
