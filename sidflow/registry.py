"""The registry of served model versions: what the control and treatment buckets serve.

One JSON file under the working folder (`registry/registry.json`), replaced atomically:

    {"promoted": Version | null,    # serves the control bucket
     "candidate": Version | null,   # passed every gate; serves the treatment bucket
     "history": [event, ...]}       # every promote / candidate / rollback, newest last

A Version names the BentoML model tags of the bundle, the DVC hash of its SID table, the data
window it was trained on and its gated metrics. Promotion happens only through `promote`
(after the gates passed), so a failed gate leaves the promoted model serving; `rollback`
brings back the version promoted before the current one.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sidflow.atomic import write_text_atomic


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (e.g. nothing to roll back to)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Registry:
    """Promoted and candidate versions, with their history, in one JSON file."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def current(self) -> dict:
        """The registry's state ({"promoted": None, "candidate": None, "history": []} if new)."""
        if not self.path.exists():
            return {"promoted": None, "candidate": None, "history": []}
        return json.loads(self.path.read_text())

    def _write(self, state: dict) -> dict:
        write_text_atomic(json.dumps(state, indent=2), self.path)
        return state

    def set_candidate(self, version: dict) -> dict:
        """`version` passed its gates: the treatment bucket serves it from now on."""
        state = self.current()
        state["candidate"] = version
        state["history"].append({"event": "candidate", "tag": version["tag"], "at": _now()})
        return self._write(state)

    def promote(self, version: dict | None = None, reason: str = "") -> dict:
        """Make `version` (default: the candidate) the promoted model serving control."""
        state = self.current()
        version = version or state.get("candidate")
        if version is None:
            raise RegistryError("nothing to promote: no candidate in the registry")
        state["promoted"] = version
        if state.get("candidate") and state["candidate"]["tag"] == version["tag"]:
            state["candidate"] = None
        event = {"event": "promote", "tag": version["tag"], "at": _now(), "version": version}
        state["history"].append(event | ({"reason": reason} if reason else {}))
        return self._write(state)

    def rollback(self) -> dict:
        """Promote again the version promoted before the current one; drop the candidate."""
        state = self.current()
        promotions = [h for h in state["history"] if h["event"] == "promote"]
        current = state["promoted"]["tag"] if state.get("promoted") else None
        earlier = [h for h in promotions if h["tag"] != current]
        if not earlier:
            raise RegistryError(f"nothing to roll back to: {current or 'no model'} is the only one")
        back = earlier[-1]["version"]
        state["promoted"], state["candidate"] = back, None
        state["history"].append(
            {"event": "rollback", "tag": back["tag"], "from": current, "at": _now()}
        )
        return self._write(state)


def serving_version(state: dict, bucket_model: str) -> dict | None:
    """The version a bucket configured as `promoted` or `candidate` serves in `state` (a
    treatment bucket serves the promoted model while there is no candidate)."""
    if bucket_model == "candidate":
        return state.get("candidate") or state.get("promoted")
    return state.get("promoted")
