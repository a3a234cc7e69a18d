"""The UI never imports torch (ARCHITECTURE.md convention 2)."""

import subprocess
import sys

from tests.conftest import ROOT


def test_importing_the_ui_does_not_import_torch_or_diffusers():
    code = (
        "import sys, studio.ui, studio.ui.schedule_panel, studio.xyplot; "
        "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
