import sys

from agentauth.cli._main import main

sys.exit(main())
