"""A local view of a Prefect run with every sealed value opened: ``reveal_run(flow_run_id)``.

Reads the run's parameters, states, task runs and logs from Prefect's API (read requests only;
nothing is ever sent back), finds every ``sealed:<profile>:<token>`` in them and opens it with
the profile (the one the token names, or the one given): a sealed parameter shows its value, a
``[sealed message ...]`` its exception's message, with the sealed traceback listed apart, a
``[sealed value ...]`` in a log line the value it stood for. With ``results=True`` the results
of completed states are read too (sealed results open through their storage block).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from sealed_results.errors import SealedResultsError
from sealed_results.sealing import (
    TOKEN_PATTERN,
    find_tokens,
    is_exception_record,
    open_token,
    parse_token,
)


def _strip_groups(pattern: str) -> str:
    return pattern.replace("(", "(?:").replace("(?:?", "(?")


__all__ = ["Revealer", "format_report", "reveal_run"]

_ANY_TOKEN = _strip_groups(TOKEN_PATTERN.pattern)
_IN_TEXT = re.compile(
    rf"\[(?:sealed message|sealed value|part of sealed value) (?P<wrapped>{_ANY_TOKEN})\]"
    rf"|(?P<bare>{_ANY_TOKEN})"
)


class Revealer:
    """Opens the sealed values of texts, once per token."""

    def __init__(self, profile: str | None = None) -> None:
        self.profile = profile
        self.opened: dict[str, Any] = {}
        self.failed: dict[str, str] = {}
        self.exceptions: dict[str, dict[str, Any]] = {}

    def open(self, token: str) -> tuple[bool, Any]:
        if token in self.opened:
            return True, self.opened[token]
        if token in self.failed:
            return False, None
        try:
            value = open_token(parse_token(token), self.profile)
        except SealedResultsError as exc:
            self.failed[token] = type(exc).__name__
            return False, None
        self.opened[token] = value
        if is_exception_record(value):
            self.exceptions[token] = value
        return True, value

    def text(self, text: str) -> str:
        """``text`` with each sealed value it holds (and the ``[sealed message ...]`` or
        ``[sealed value ...]`` around it) replaced by what it seals."""
        if "sealed:" not in text:
            return text

        def replace(match: re.Match[str]) -> str:
            token = match.group("wrapped") or match.group("bare")
            ok, value = self.open(token)
            if not ok:
                return match.group(0)
            return value["message"] if is_exception_record(value) else _show(value)

        return _IN_TEXT.sub(replace, text)

    def value(self, value: Any) -> Any:
        """A parameter value with sealed values opened (strings at any depth)."""
        if isinstance(value, str):
            match = list(find_tokens(value))
            if len(match) == 1 and match[0].group(0) == value:
                ok, opened = self.open(value)
                return opened if ok else value
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _state(state: Any, revealer: Revealer) -> dict[str, Any]:
    if state is None:
        return {}
    return {
        "type": str(getattr(state.type, "value", state.type)),
        "name": state.name,
        "timestamp": str(state.timestamp),
        "message": revealer.text(state.message or ""),
    }


async def _read(flow_run_id: uuid.UUID) -> tuple[Any, list[Any], list[Any], list[Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import LogSort, TaskRunSort

    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        states = await client.read_flow_run_states(flow_run_id)
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )
        logs: list[Any] = []
        while True:
            page = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                limit=200,
                offset=len(logs),
                sort=LogSort.TIMESTAMP_ASC,
            )
            logs += page
            if len(page) < 200:
                break
    return flow_run, states, task_runs, logs


def _result(state: Any) -> Any:
    try:
        return {"value": repr(state.result(raise_on_failure=False))}
    except Exception as exc:  # a result that is not stored, or not readable here
        return {"unavailable": type(exc).__name__}


def reveal_run(
    flow_run_id: str | uuid.UUID, profile: str | None = None, *, results: bool = False
) -> dict[str, Any]:
    """The run as Prefect's API stores it, with every sealed value this profile can open
    revealed: parameters, flow-run states, task runs, logs, and the sealed exceptions (type,
    message, traceback) found in them."""
    run_id = flow_run_id if isinstance(flow_run_id, uuid.UUID) else uuid.UUID(str(flow_run_id))
    flow_run, states, task_runs, logs = asyncio.run(_read(run_id))
    revealer = Revealer(profile)
    report: dict[str, Any] = {
        "flow_run": {"id": str(flow_run.id), "name": flow_run.name},
        "parameters": {k: revealer.value(v) for k, v in (flow_run.parameters or {}).items()},
        "states": [_state(s, revealer) for s in states],
        "task_runs": [
            {"name": t.name, "state": _state(t.state, revealer)}
            | ({"result": _result(t.state)} if results and t.state else {})
            for t in task_runs
        ],
        "logs": [
            {
                "timestamp": str(log.timestamp),
                "level": log.level,
                "logger": log.name,
                "message": revealer.text(log.message),
            }
            for log in logs
        ],
    }
    if results and flow_run.state is not None:
        report["result"] = _result(flow_run.state)
    report["exceptions"] = [
        {
            "token": token,
            "type": record.get("type"),
            "message": record.get("message"),
            "traceback": record.get("traceback"),
        }
        for token, record in revealer.exceptions.items()
    ]
    report["unopened"] = [
        {"token": token, "error": error} for token, error in revealer.failed.items()
    ]
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    lines = [f"flow run {report['flow_run']['name']} ({report['flow_run']['id']})", ""]
    lines.append("parameters:")
    for key, value in report["parameters"].items():
        lines.append(f"  {key} = {_show(value)}")
    lines.append("")
    lines.append("flow-run states:")
    for state in report["states"]:
        lines.append(f"  {state['timestamp']} {state['name']}: {state['message']}")
    if "result" in report:
        lines.append(f"  result: {report['result']}")
    lines.append("")
    lines.append("task runs:")
    for task_run in report["task_runs"]:
        state = task_run["state"]
        line = f"  {task_run['name']}: {state.get('name')} {state.get('message', '')}".rstrip()
        if "result" in task_run:
            line += f" -> {task_run['result']}"
        lines.append(line)
    lines.append("")
    lines.append("logs:")
    for log in report["logs"]:
        lines.append(f"  {log['timestamp']} {log['level']:>2} {log['logger']}: {log['message']}")
    if report["exceptions"]:
        lines.append("")
        lines.append("sealed exceptions:")
        for record in report["exceptions"]:
            lines.append(f"  {record['type']}: {record['message']}")
            for line in (record.get("traceback") or "").rstrip().splitlines():
                lines.append(f"    {line}")
    if report["unopened"]:
        lines.append("")
        lines.append(f"{len(report['unopened'])} sealed value(s) could not be opened here")
    return "\n".join(lines)
