"""sessionflow: Agntix session webhooks into exactly-once Kafka streams."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sessionflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
