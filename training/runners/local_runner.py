"""Run the pipeline on this machine: TFX LocalDagRunner + embedded ML Metadata (SQLite).

Beam components run on Beam's DirectRunner in-process by default (``--direct_running_mode=in_memory
--direct_num_workers=1``, right for 2 cores).  Other Beam runners are selected with Beam pipeline args, e.g.
``--beam-arg=--runner=FlinkRunner --beam-arg=--flink_master=host:8081 --beam-arg=--environment_type=LOOPBACK``,
``--beam-arg=--runner=SparkRunner ...`` or ``--beam-arg=--runner=DataflowRunner --beam-arg=--project=P
--beam-arg=--region=R --beam-arg=--temp_location=gs://...`` (see training/cli.py).
"""

from __future__ import annotations

import logging
import sys

from tfx import v1 as tfx

log = logging.getLogger(__name__)


def run(pipeline: tfx.dsl.Pipeline) -> None:
    # TFX's Beam executors parse absl flags from sys.argv + beam args; hide the host program's own argv
    # (e.g. pytest's "-v -p ...", which absl would read as --verbosity) while the pipeline runs.
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    finally:
        sys.argv = saved
