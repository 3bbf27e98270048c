"""Exceptions of our own, so callers can tell our failures from library ones.

Each carries a message written for the person who has to fix the problem (an operator
setting environment variables, a model author, an API client).
"""


class CsRuntimeError(Exception):
    """Base class of every error cs_runtime raises on purpose."""


class ConfigError(CsRuntimeError):
    """An environment variable the chart should have set is missing or invalid."""


class ModelContractError(CsRuntimeError):
    """The model's cs_config.functions does not behave as C/S models must."""


class RoutingTableError(CsRuntimeError):
    """The gateway's routing table cannot be read or is not in the contract's format."""


class UnknownModelError(CsRuntimeError):
    """A request named a model that is not in the routing table."""


class UnknownJobError(CsRuntimeError):
    """A request named a job id the gateway never handed out for that model (or forgot)."""


class BadRequestError(CsRuntimeError):
    """A request (an HTTP body or path, or task arguments) that cannot be accepted."""


class BrokerUnavailableError(CsRuntimeError):
    """Redis (the Celery broker and result backend) could not be reached."""


class JobTimeoutError(CsRuntimeError):
    """A synchronous job (inputs, version) did not answer within its time limit."""


class ModelRunError(CsRuntimeError):
    """run_model raised on a Dask worker; the message is the worker-side traceback."""
