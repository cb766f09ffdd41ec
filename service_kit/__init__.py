"""What every long-running geoingest process shares: CLI/env configuration, JSON logs,
the admin endpoint (/metrics, /status), graceful shutdown and the regions file."""
