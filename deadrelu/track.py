"""Old import path of :mod:`deadrelu.track_checkpoints`, kept because earlier docs showed
``deadrelu.track.track(model, "runs/a", data)``. New code imports from
:mod:`deadrelu.track_checkpoints`."""

from deadrelu.track_checkpoints import Checkpoint, Transition, Trend, discover, track

__all__ = ["Checkpoint", "Transition", "Trend", "discover", "track"]
