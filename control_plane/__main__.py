from control_plane.cli import main
import sys
sys.exit(main())
