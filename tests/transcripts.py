"""The AMI transcript fixtures, for tests (the parser lives with the recordings in pbxsim.recorded)."""
from pbxsim.recorded.transcripts import *  # noqa: F401,F403
from pbxsim.recorded.transcripts import __all__  # noqa: F401
