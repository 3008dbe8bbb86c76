"""Consecutive-result thresholds between a probe and the agent's state.

A single flaky probe should not flip a service out of DNS, so Consul filters results through
SuccessBeforePassing / FailuresBeforeWarning / FailuresBeforeCritical. The counters start
saturated: a freshly registered check must leave its initial status on its first result,
not after N of them. Results below a threshold are dropped entirely, output included, so the
stored output always belongs to the stored status.
"""

from __future__ import annotations

import logging

from .base import CheckStatusSink

log = logging.getLogger(__name__)

PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"


class ThresholdSink:
    """A `CheckStatusSink` that forwards only results which crossed their threshold."""

    __slots__ = (
        "failures_before_critical",
        "failures_before_warning",
        "failures_counter",
        "inner",
        "success_before_passing",
        "success_counter",
    )

    def __init__(
        self,
        inner: CheckStatusSink,
        success_before_passing: int = 0,
        failures_before_warning: int = 0,
        failures_before_critical: int = 0,
    ) -> None:
        self.inner = inner
        self.success_before_passing = max(0, success_before_passing)
        self.failures_before_critical = max(0, failures_before_critical)
        # an unset warning threshold means "same as critical", as Consul's config defaults it;
        # otherwise the first failure of a check with only a critical threshold would warn
        self.failures_before_warning = (
            max(0, failures_before_warning) if failures_before_warning > 0
            else self.failures_before_critical
        )
        self.success_counter = self.success_before_passing
        self.failures_counter = self.failures_before_critical

    def update_check(self, check_id: str, status: str, output: str) -> None:
        if status in (PASSING, WARNING):
            self.success_counter += 1
            self.failures_counter = 0
            if self.success_counter >= self.success_before_passing:
                self.inner.update_check(check_id, status, output)
                return
            log.debug("check %s passed but has not reached its success threshold (%d/%d)",
                      check_id, self.success_counter, self.success_before_passing)
            return
        self.failures_counter += 1
        self.success_counter = 0
        if self.failures_counter >= self.failures_before_critical:
            self.inner.update_check(check_id, status, output)
            return
        if self.failures_counter >= self.failures_before_warning:
            self.inner.update_check(check_id, WARNING, output)
            return
        log.debug("check %s failed but has not reached its warning/critical threshold (%d)",
                  check_id, self.failures_counter)
