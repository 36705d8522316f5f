"""The daemon: scheduled runs, the outbox dispatcher and the HTTP surface in one process."""
