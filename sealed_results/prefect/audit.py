"""A privacy lint for Prefect flows: every path by which data would still reach Prefect's API.

``audit_target("flows.py:pipeline")`` (a file or module, optionally ``:name``) checks the flows
it finds and the tasks their code refers to; ``audit_deployment("pipeline/prod")`` reads a
deployment from the API (its stored parameter values and schema, its work pool's and the
server's default result storage) and checks the flow its entrypoint names. Findings:

- ``unsealed-result``: a task or flow whose results persist without ``sealed()`` (Prefect's
  pickle in your storage, its key in the API); with the API, a server or work-pool default
  result storage makes every task persist.
- ``default-result-storage``: a server or work-pool default result storage is set.
- ``unkeyed-cache-policy``: a cache policy or ``cache_key_fn`` whose key (the storage key the API
  stores) is an unkeyed hash of the inputs.
- ``storage-key-template``: ``result_storage_key`` (rendered with parameters, stored).
- ``run-name-template``, ``run-name-function``: run names rendered from parameters.
- ``plain-parameter``, ``leaking-parameter``: parameters stored in clear (any type but
  ``SealedValue``/``Revealed[T]``; ``SecretDict`` in clear, ``SecretStr`` values given to
  deployment runs); ``deployment-parameter-value``: a default value stored with a deployment.
- ``log-prints``: ``log_prints=True`` ships printed text.
- ``exception-message``: a failure's message would reach the API (no ``seal_exceptions``).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import string
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from prefect import Flow, Task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.settings import get_current_settings
from pydantic import Secret, SecretBytes, SecretStr

from sealed_results.errors import ConfigError
from sealed_results.prefect.cache import SealedCachePolicy
from sealed_results.prefect.failures import exception_options
from sealed_results.prefect.parameters import RevealMarker, SealedValue
from sealed_results.prefect.serializer import SealedSerializer
from sealed_results.prefect.storage import SealedResultStorage
from sealed_results.sealing import TOKEN_FORMAT, is_sealed_token

__all__ = ["Finding", "audit_deployment", "audit_flow", "audit_target", "load_flows"]


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


# -- loading -----------------------------------------------------------------------------------
def _load_module(spec: str) -> types.ModuleType:
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ConfigError("the flow file to audit does not exist")
        name = f"_sealed_results_audit_{abs(hash(str(path.resolve())))}"
        loader = importlib.util.spec_from_file_location(name, path)
        if loader is None or loader.loader is None:
            raise ConfigError("the flow file to audit cannot be loaded")
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module
        sys.path.insert(0, str(path.resolve().parent))
        try:
            loader.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    return importlib.import_module(spec)


def load_flows(target: str) -> list[Flow[Any, Any]]:
    """The flows of ``target``: ``file.py``, ``package.module``, either with ``:name``."""
    spec, _, name = target.rpartition(":") if ":" in target[2:] else (target, "", "")
    module = _load_module(spec)
    if name:
        found = getattr(module, name, None)
        if not isinstance(found, Flow):
            raise ConfigError(f"{name} is not a Prefect flow of that module")
        return [found]
    flows = [v for v in vars(module).values() if isinstance(v, Flow)]
    if not flows:
        raise ConfigError("no Prefect flow found in that module")
    return flows


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def tasks_of(flow: Flow[Any, Any]) -> list[Task[Any, Any]]:
    """The tasks a flow's code refers to by a global name (directly or in nested functions)."""
    fn = inspect.unwrap(flow.fn)
    scope = getattr(fn, "__globals__", {})
    found: dict[int, Task[Any, Any]] = {}
    for name in _names(fn.__code__):
        value = scope.get(name)
        if isinstance(value, Task):
            found[id(value)] = value
    return list(found.values())


# -- checks ------------------------------------------------------------------------------------
def _uses_fields(template: str) -> bool:
    try:
        return any(f is not None for _, f, _, _ in string.Formatter().parse(template))
    except ValueError:
        return True


def _is_sealed(obj: Any) -> bool:
    return isinstance(obj.result_storage, SealedResultStorage) and isinstance(
        obj.result_serializer, SealedSerializer
    )


def _persists(obj: Any, default_storage: bool) -> bool:
    if obj.persist_result is not None:
        return bool(obj.persist_result)
    if default_storage or get_current_settings().results.persist_by_default:
        return True
    if isinstance(obj, Task):
        explicit = obj.cache_key_fn is not None or obj.result_storage_key is not None
        return explicit or obj.result_storage is not None or obj.result_serializer is not None
    return obj.result_storage is not None or obj.result_serializer is not None


def _run_name(option: str, value: Any, where: str) -> Iterator[Finding]:
    if isinstance(value, str) and _uses_fields(value):
        yield Finding(
            "run-name-template",
            where,
            f"{option} {value!r} renders parameters into a name the API stores",
        )
    elif callable(value):
        yield Finding(
            "run-name-function", where, f"{option} is computed by a function; the API stores it"
        )


def audit_task(
    task: Task[Any, Any], flow: Flow[Any, Any] | None = None, *, default_storage: bool = False
) -> list[Finding]:
    where = f"task {task.name}"
    found: list[Finding] = []
    sealed = _is_sealed(task)
    persists = _persists(task, default_storage)
    if persists and not sealed:
        reason = " (a default result storage turns persistence on)" if default_storage else ""
        found.append(
            Finding(
                "unsealed-result",
                where,
                "results persist unsealed: Prefect's serialized value in the result storage, "
                f"its storage key and serializer in the API{reason}; use @task(**sealed())",
            )
        )
    policy: CachePolicy | None = (
        task.cache_policy if isinstance(task.cache_policy, CachePolicy) else None
    )
    unkeyed = task.cache_key_fn is not None or (
        policy is not None and policy is not NO_CACHE and not isinstance(policy, SealedCachePolicy)
    )
    if persists and unkeyed and not (sealed and isinstance(policy, SealedCachePolicy)):
        found.append(
            Finding(
                "unkeyed-cache-policy",
                where,
                "the cache key (stored by the API as the storage key) is an unkeyed hash of the "
                "inputs: a guessed input can be confirmed offline; use sealed()'s keyed policy",
            )
        )
    if task.result_storage_key is not None:
        found.append(
            Finding(
                "storage-key-template",
                where,
                "result_storage_key is rendered with parameters and stored by the API",
            )
        )
    found += _run_name("task_run_name", task.task_run_name, where)
    if task.log_prints:
        found.append(Finding("log-prints", where, "log_prints=True ships printed text"))
    if not exception_options(task, flow)[0]:
        found.append(
            Finding(
                "exception-message",
                where,
                "a failure's message reaches the API (state message, events, logs); "
                "use sealed(seal_exceptions=True)",
            )
        )
    return found


def _sealed_annotation(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, SealedValue):
        return True
    return any(isinstance(m, RevealMarker) for m in getattr(annotation, "__metadata__", ()))


def _leaky_kind(annotation: Any) -> str | None:
    from prefect.types import SecretDict

    candidates = [annotation, get_origin(annotation), *get_args(annotation)]
    for item in candidates:
        if item is SecretDict:
            return "SecretDict stores its values in clear ({'_secret_value': ...})"
        if isinstance(item, type) and issubclass(item, SecretStr | SecretBytes | Secret):
            return (
                f"{item.__name__} is masked in flow-run parameters, but values given to "
                "deployment runs are stored by the API"
            )
    return None


def audit_flow(flow: Flow[Any, Any], *, default_storage: bool = False) -> list[Finding]:
    """The findings for a flow and the tasks its code refers to."""
    where = f"flow {flow.name}"
    found: list[Finding] = []
    fn = inspect.unwrap(flow.fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # an annotation that does not resolve here
        hints = {}
    for name, parameter in inspect.signature(fn).parameters.items():
        annotation = hints.get(name, parameter.annotation)
        if _sealed_annotation(annotation):
            continue
        leak = _leaky_kind(annotation)
        if leak is not None:
            found.append(Finding("leaking-parameter", where, f"parameter {name!r}: {leak}"))
        else:
            found.append(
                Finding(
                    "plain-parameter",
                    where,
                    f"parameter {name!r} is stored by the API in clear; annotate it SealedValue "
                    "or Revealed[T] and pass seal(value)",
                )
            )
    if _persists(flow, default_storage) and not _is_sealed(flow):
        found.append(
            Finding(
                "unsealed-result",
                where,
                "the flow's result persists unsealed; use @flow(**sealed_flow())",
            )
        )
    found += _run_name("flow_run_name", flow.flow_run_name, where)
    if flow.log_prints:
        found.append(Finding("log-prints", where, "log_prints=True ships printed text"))
    if not exception_options(flow)[0]:
        found.append(
            Finding(
                "exception-message",
                where,
                "a failure's message reaches the API; use sealed_flow(seal_exceptions=True)",
            )
        )
    for task in tasks_of(flow):
        found += audit_task(task, flow, default_storage=default_storage)
    return found


def audit_target(target: str, *, api: bool = False) -> list[Finding]:
    """Findings for the flows of a file or module (``path.py[:flow]``, ``module[:flow]``);
    with ``api``, the server's default result storage counts too."""
    found: list[Finding] = []
    default_storage = False
    if api:
        default_found, default_storage = asyncio.run(_server_default_storage())
        found += default_found
    for flow in load_flows(target):
        found += audit_flow(flow, default_storage=default_storage)
    return _unique(found)


def _unique(found: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(found))


async def _server_default_storage() -> tuple[list[Finding], bool]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        try:
            stored = await client.read_server_default_result_storage()
        except Exception:
            return [], False
    if stored.default_result_storage_block_id is None:
        return [], False
    return [
        Finding(
            "default-result-storage",
            "server",
            "a server default result storage is set: every task persists its results there "
            "unless it uses sealed()",
        )
    ], True


async def _deployment_findings(name: str) -> tuple[list[Finding], Any, bool]:
    from prefect.client.orchestration import get_client

    found, default_storage = await _server_default_storage()
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(name)
        where = f"deployment {name}"
        for key, value in (deployment.parameters or {}).items():
            if not is_sealed_token(value):
                found.append(
                    Finding(
                        "deployment-parameter-value",
                        where,
                        f"default value of parameter {key!r} is stored by the API in clear",
                    )
                )
        properties = (deployment.parameter_openapi_schema or {}).get("properties", {})
        for key, schema in properties.items():
            if isinstance(schema, dict) and schema.get("format") != TOKEN_FORMAT:
                found.append(
                    Finding(
                        "plain-parameter",
                        where,
                        f"parameter {key!r} is not a sealed value in the deployment's schema",
                    )
                )
        if deployment.work_pool_name:
            try:
                pool = await client.read_work_pool(deployment.work_pool_name)
            except Exception:
                pool = None
            storage = getattr(pool, "storage_configuration", None)
            if storage is not None and storage.default_result_storage_block_id is not None:
                default_storage = True
                found.append(
                    Finding(
                        "default-result-storage",
                        f"work pool {deployment.work_pool_name}",
                        "a work-pool default result storage is set: every task persists its "
                        "results there unless it uses sealed()",
                    )
                )
    return found, deployment, default_storage


def audit_deployment(name: str, *, code_root: str | None = None) -> tuple[list[Finding], str]:
    """Findings for a deployment (``flow-name/deployment-name``) read from the API, and a note
    on whether its flow's code could be loaded here for the static checks."""
    from prefect.flows import load_flow_from_entrypoint

    found, deployment, default_storage = asyncio.run(_deployment_findings(name))
    note = "the deployment has no entrypoint: only what the API stores was checked"
    if deployment.entrypoint:
        entrypoint = deployment.entrypoint
        base = Path(code_root) if code_root else Path.cwd()
        file, _, attr = entrypoint.rpartition(":")
        path = base / file
        if deployment.path and not path.exists():
            path = base / deployment.path / file
        try:
            flow: Flow[Any, Any] = load_flow_from_entrypoint(f"{path}:{attr}")
        except Exception as exc:
            note = f"the flow's code was not loaded here ({type(exc).__name__}); run from its root"
        else:
            note = "the flow's code was loaded from its entrypoint"
            found += audit_flow(flow, default_storage=default_storage)
    return _unique(found), note
