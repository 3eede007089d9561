"""The rule registry: every diagnosis rule with its code and its documentation.

Invariants:

* A code (``DR001``) names one rule forever; registering a code twice raises.
* Each rule's documentation (``name``, ``summary``, ``why``, ``fix``, ``example``)
  is declared with the rule's check, in the rule's own module, and is what
  ``deadrelu rules`` prints and ``docs/rules.md`` is generated from.
* Importing this module, and listing the rules, imports neither torch nor the
  rules' numerics beyond numpy, so ``deadrelu rules`` stays quick.
"""

from __future__ import annotations

import importlib
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deadrelu.findings import CAUSES

if TYPE_CHECKING:
    from deadrelu.diagnose.context import Context
    from deadrelu.findings import Finding

Check = Callable[["Context"], Iterable["Finding"]]

_CODE = re.compile(r"^DR\d{3}$")

#: Modules that define rules; imported on first use of :data:`RULES`.
RULE_MODULES = (
    "deadrelu.diagnose.rules.dead_units",
    "deadrelu.diagnose.rules.depth",
    "deadrelu.diagnose.rules.data",
    "deadrelu.diagnose.rules.activations",
)


@dataclass(frozen=True)
class Rule:
    """One diagnosis rule.

    Attributes:
        code: stable code, ``DR`` plus three digits.
        name: short kebab-case name.
        causes: the causes its findings carry (from :data:`deadrelu.findings.CAUSES`).
        severity: when it reports ``error``, ``warning`` or ``info``.
        summary: the problem in one short sentence.
        checks: exactly what it checks (the criteria and thresholds).
        why: why it matters.
        fix: what to change.
        example: a model or situation that triggers it, and the finding it gives.
        check: ``check(context)`` yields the findings.
    """

    code: str
    name: str
    causes: tuple[str, ...]
    severity: str
    summary: str
    checks: str
    why: str
    fix: str
    example: str
    check: Check

    def to_markdown(self) -> str:
        """The rule's documentation as a Markdown section."""
        causes = ", ".join(f"`{c}`" for c in self.causes)
        return (
            f"## {self.code} `{self.name}`\n\n{self.summary}\n\n"
            f"- **Cause:** {causes}\n- **Severity:** {self.severity}\n\n"
            f"**What it checks.** {self.checks}\n\n"
            f"**Why it matters.** {self.why}\n\n**Fix.** {self.fix}\n\n"
            f"**Example.** {self.example}\n"
        )

    def to_text(self, width: int = 88) -> str:
        """The rule's documentation as plain text (``deadrelu rules CODE``), wrapped to ``width``."""

        def block(title: str, text: str) -> str:
            body = textwrap.fill(text, width, initial_indent="  ", subsequent_indent="  ")
            return f"{title}:\n{body}\n"

        return "\n".join([
            f"{self.code} {self.name}: {self.summary}\n",
            f"Cause:    {', '.join(self.causes)}\nSeverity: {self.severity}\n",
            block("What it checks", self.checks), block("Why it matters", self.why),
            block("Fix", self.fix), block("Example", self.example),
        ])


class Registry:
    """Rules by code, in code order; refuses a duplicate code."""

    def __init__(self, modules: Iterable[str] = ()) -> None:
        self._rules: dict[str, Rule] = {}
        self._modules = tuple(modules)
        self._loaded = not self._modules

    def add(self, rule: Rule) -> None:
        """Register ``rule``; raises ``ValueError`` for a malformed or duplicate code."""
        if not _CODE.match(rule.code):
            raise ValueError(f"rule code {rule.code!r} is not DR followed by three digits")
        if rule.code in self._rules:
            raise ValueError(f"rule code {rule.code} is already registered "
                             f"({self._rules[rule.code].name}); codes never change meaning")
        unknown = [c for c in rule.causes if c not in CAUSES]
        if unknown or not rule.causes:
            raise ValueError(f"rule {rule.code} has unknown causes {unknown}")
        self._rules[rule.code] = rule

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def __iter__(self) -> Iterator[Rule]:
        self._load()
        return iter(sorted(self._rules.values(), key=lambda r: r.code))

    def __len__(self) -> int:
        self._load()
        return len(self._rules)

    def __contains__(self, code: object) -> bool:
        self._load()
        return code in self._rules

    def get(self, code: str) -> Rule:
        """The rule with ``code`` (case-insensitive); raises ``KeyError`` listing the codes."""
        self._load()
        rule = self._rules.get(code.strip().upper())
        if rule is None:
            raise KeyError(f"no rule {code!r}; rules: {', '.join(self.codes())}")
        return rule

    def codes(self) -> list[str]:
        """All codes, sorted."""
        return [r.code for r in self]


#: All rules of deadrelu.
RULES = Registry(RULE_MODULES)


def rule(
    *,
    code: str,
    name: str,
    causes: tuple[str, ...],
    severity: str,
    summary: str,
    checks: str,
    why: str,
    fix: str,
    example: str,
    registry: Registry = RULES,
) -> Callable[[Check], Check]:
    """Decorator registering a check function as a rule with its documentation."""

    def decorate(check: Check) -> Check:
        registry.add(Rule(code, name, tuple(causes), _clean(severity), _clean(summary),
                          _clean(checks), _clean(why), _clean(fix), _clean(example), check))
        return check

    return decorate


def _clean(text: str) -> str:
    return " ".join(text.split())
