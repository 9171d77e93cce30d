"""What a lint returns: findings (one rule hit each) and the report that holds them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One rule hit: ``error`` if TensorRT rejects the graph or computes it wrongly, else ``warning``."""

    rule: str
    severity: Severity
    message: str
    node: str | None = None
    op_type: str | None = None
    fix: str = ""


@dataclass
class LintReport:
    """Every finding for one model and one TensorRT target."""

    findings: list[Finding]
    trt_major: int
    opset: int | None
    trt_version: str | None = None
    model: str | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def summary(self) -> str:
        target = f"TensorRT {self.trt_version or self.trt_major}"
        counts = f"{_plural(len(self.errors), 'error')}, {_plural(len(self.warnings), 'warning')}"
        head = f"{self.model}: " if self.model else ""
        return f"{head}{target}, opset {self.opset}: {counts if self.findings else 'clean'}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "trt_major": self.trt_major,
            "trt_version": self.trt_version,
            "opset": self.opset,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [asdict(f) for f in self.findings],
        }

    def __str__(self) -> str:
        rows = [(f.severity, f.rule, _where(f), f.message, f.fix) for f in self.errors + self.warnings]
        if not rows:
            return self.summary()
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [self.summary()]
        for severity, rule, where, message, fix in rows:
            lines.append(f"  {severity:<{widths[0]}}  {rule:<{widths[1]}}  {where:<{widths[2]}}  {message}")
            if fix:
                lines.append(f"  {'':<{sum(widths) + 4}}  fix: {fix}")
        return "\n".join(lines)


def _where(finding: Finding) -> str:
    if finding.node and finding.op_type:
        return f"{finding.node} ({finding.op_type})"
    return finding.node or finding.op_type or "-"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
