"""The only place that builds queries: routes, the stream and the worker call these functions.

Split by noun (runs, events, metrics, checkpoints, leases, forks) to keep each file short; import
from ``app.crud`` itself.
"""

from app.crud.checkpoints import (
    copy_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    save_checkpoint,
)
from app.crud.events import (
    applied_set_lr_since,
    current_pace,
    event_payload,
    events_by_ids,
    list_events,
    mark_applied,
    pending_commands,
    record_command,
    record_worker_event,
    serialize_event,
    steps_left,
)
from app.crud.forks import fork_run
from app.crud.leases import (
    claim_run,
    has_queued_runs,
    release_run,
    renew_lease,
    stop_if_unclaimed,
)
from app.crud.metrics import (
    append_metrics,
    count_metrics,
    iter_metric_rows,
    last_metrics,
    metric_rows,
    metrics_after,
)
from app.crud.overview import metrics_overview, metrics_window
from app.crud.runs import (
    create_run,
    get_run,
    iso,
    list_runs,
    now,
    run_config,
    serialize_run,
    update_run,
)

__all__ = [
    "append_metrics",
    "applied_set_lr_since",
    "claim_run",
    "copy_checkpoint",
    "count_metrics",
    "create_run",
    "current_pace",
    "event_payload",
    "events_by_ids",
    "fork_run",
    "get_run",
    "has_queued_runs",
    "iso",
    "iter_metric_rows",
    "last_metrics",
    "latest_checkpoint",
    "list_checkpoints",
    "list_events",
    "list_runs",
    "mark_applied",
    "metric_rows",
    "metrics_after",
    "metrics_overview",
    "metrics_window",
    "now",
    "pending_commands",
    "prune_checkpoints",
    "record_command",
    "record_worker_event",
    "release_run",
    "renew_lease",
    "run_config",
    "save_checkpoint",
    "serialize_event",
    "serialize_run",
    "steps_left",
    "stop_if_unclaimed",
    "update_run",
]
