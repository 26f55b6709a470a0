import sys

from perf_sdk.cli import main

sys.exit(main())
