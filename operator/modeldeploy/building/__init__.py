"""The archive build Job of a revision and how to read its outcome: pure functions, no API access.

The Job runs the operator's own image and command (`modeldeploy archive build`, the archives package).
"""

from modeldeploy.building.job import build_args, build_job, job_name
from modeldeploy.building.outcome import JobOutcome, JobState, archive_status, job_outcome, store_uri

__all__ = [
    "JobOutcome",
    "JobState",
    "archive_status",
    "build_args",
    "build_job",
    "job_name",
    "job_outcome",
    "store_uri",
]
