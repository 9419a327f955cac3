"""Template-side synthesis (§4.2, §4.4, §4.5): hidden queues, sink served series, outputs.

These run on the substituted template before validation, exactly where FlowTime's
``QueueNodeSynthesizer``/``SinkNodeSynthesizer`` and ``EnsureSemanticsOutputs`` run.
"""

from __future__ import annotations

from typing import Any

from flowdrop.core.templating.diagnostics import invalid, text

_OUTPUT_SEMANTICS = (
    "arrivals", "served", "errors", "attempts", "failures", "retryEcho", "queueDepth",
    "capacity", "external_demand", "processingTimeMsSum", "servedCount",
)  # fmt: skip


def snake(identifier: str) -> str:
    """Upstream's snake-case for synthesized ids: ``HubQueue`` -> ``hub_queue``."""
    out: list[str] = []
    for index, ch in enumerate(c for c in identifier if not c.isspace()):
        if ch.isupper():
            if index > 0 and out and out[-1] != "_":
                out.append("_")
            out.append(ch.lower())
        elif ch.isalnum():
            out.append(ch)
        else:
            out.append("_")
    return "".join(out).strip("_")


def synthesize_queues(root: dict[str, Any]) -> None:
    """QueueNodeSynthesizer (§4.4): hidden serviceWithBuffer nodes for buffered topology nodes."""
    nodes: list[dict[str, Any]] = root.setdefault("nodes", []) or []
    topology = root.get("topology") or {}
    for tnode in topology.get("nodes") or []:
        if not isinstance(tnode, dict):
            continue
        if text(tnode.get("kind")).lower() not in ("servicewithbuffer", "queue", "dlq"):
            continue
        semantics = tnode.setdefault("semantics", {}) or {}
        requested = text(semantics.get("queueDepth"))
        existing = {text(n.get("id")) for n in nodes if isinstance(n, dict)}
        if requested and requested != "self" and requested in existing:
            continue
        tid = text(tnode.get("id"))
        arrivals = text(semantics.get("arrivals"))
        if not arrivals:
            raise invalid(
                f"Topology node '{tid}' must define semantics.arrivals to synthesize queue behavior.",
                "topology.nodes.semantics.arrivals",
                tid,
            )
        outflow = text(semantics.get("served")) or text(semantics.get("capacity"))
        if not outflow:
            raise invalid(
                f"Topology node '{tid}' must define semantics.served or semantics.capacity to "
                "synthesize queue behavior.",
                "topology.nodes.semantics.served",
                tid,
            )
        if requested and requested != "self":
            queue_id = requested
        else:
            base = snake(tid) + "_queue"
            lowered = {e.lower() for e in existing}
            queue_id, k = base, 0
            while queue_id.lower() in lowered:
                k += 1
                queue_id = f"{base}_{k}"
        synthesized: dict[str, Any] = {
            "id": queue_id,
            "kind": "serviceWithBuffer",
            "inflow": arrivals,
            "outflow": outflow,
        }
        loss = text(semantics.get("errors"))
        if loss:
            synthesized["loss"] = loss
        if isinstance(tnode.get("dispatchSchedule"), dict):
            synthesized["dispatchSchedule"] = dict(tnode["dispatchSchedule"])
        synthesized["metadata"] = {"graph.hidden": "true"}
        nodes.append(synthesized)
        semantics["queueDepth"] = queue_id


def synthesize_sinks(root: dict[str, Any]) -> None:
    """SinkNodeSynthesizer (§4.5): served = arrivals, or MAX(0, arrivals - errors)."""
    nodes: list[dict[str, Any]] = root.get("nodes") or []
    for tnode in (root.get("topology") or {}).get("nodes") or []:
        if not isinstance(tnode, dict) or text(tnode.get("kind")).lower() != "sink":
            continue
        tid = text(tnode.get("id"))
        semantics = tnode.setdefault("semantics", {}) or {}
        arrivals = text(semantics.get("arrivals"))
        if not arrivals:
            raise invalid(
                f"Topology node '{tid}' of kind sink must define semantics.arrivals.",
                "topology.nodes.semantics.arrivals",
                tid,
            )
        served, errors = text(semantics.get("served")), text(semantics.get("errors"))
        if not served:
            if errors:
                served_id = snake(tid) + "_served"
                nodes.append(
                    {
                        "id": served_id,
                        "kind": "expr",
                        "expr": f"MAX(0, {arrivals} - {errors})",
                        "metadata": {"graph.hidden": "true"},
                    }
                )
                semantics["served"] = served_id
            else:
                semantics["served"] = arrivals
        elif not errors and served != arrivals:
            raise invalid(
                f"Topology node '{tid}' of kind sink must map semantics.served to the same "
                "series as semantics.arrivals.",
                "topology.nodes.semantics.served",
                served,
            )


def semantics_outputs(root: dict[str, Any]) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = []
    for output in root.get("outputs") or []:
        entry = {"series": text(output.get("series"))}
        if output.get("exclude"):
            entry["exclude"] = output["exclude"]
        if output.get("as"):
            entry["as"] = str(output["as"])
        outputs.append(entry)
    present = {o["series"].lower() for o in outputs}
    for tnode in (root.get("topology") or {}).get("nodes") or []:
        semantics = tnode.get("semantics") or {}
        for key in _OUTPUT_SEMANTICS:
            ref = text(semantics.get(key))
            if ref and ref.lower() not in present:
                present.add(ref.lower())
                outputs.append({"series": ref})
    return outputs
