#!/usr/bin/env python3
"""The Loupe docker in the real Krita, headless: run_e2e.py <staged pykrita dir> <work dir>
(environment: LOUPE_KRITA_E2E_IMAGE, LOUPE_KRITA_E2E_INPAINT_MODEL, optional
LOUPE_KRITA_E2E_VISION_MODEL, KRITA, XVFB_RUN). Installs the staged plug-in and the test driver
(driver/) into a fresh Krita profile (XDG_DATA_HOME, XDG_CONFIG_HOME), enables both, starts
`krita --nosplash` under xvfb-run and checks the driver's report. Screenshots go to <work dir>/shots."""
import json
import os
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    stage, work = sys.argv[1], os.path.abspath(sys.argv[2])
    krita = os.environ.get("KRITA", "krita")
    xvfb = os.environ.get("XVFB_RUN", "xvfb-run")
    shutil.rmtree(work, ignore_errors=True)
    pykrita = os.path.join(work, "data", "krita", "pykrita")
    shutil.copytree(stage, pykrita)
    shutil.copytree(os.path.join(HERE, "driver"), pykrita, dirs_exist_ok=True)
    config = os.path.join(work, "config")
    os.makedirs(config)
    with open(os.path.join(config, "kritarc"), "w") as f:
        # The Python Plugin Manager's switches, and no first-start dialogs.
        f.write("[python]\nenable_loupe_krita=true\nenable_loupe_krita_e2e=true\n")
    out = os.path.join(work, "report.json")
    env = dict(os.environ, XDG_DATA_HOME=os.path.join(work, "data"), XDG_CONFIG_HOME=config,
               XDG_CACHE_HOME=os.path.join(work, "cache"), HOME=os.path.join(work, "home"),
               LOUPE_KRITA_E2E_OUT=out, LOUPE_KRITA_E2E_SHOTS=os.path.join(work, "shots"),
               LOUPE_DEVICE="cpu", OMP_WAIT_POLICY="passive")
    os.makedirs(env["HOME"], exist_ok=True)
    # Krita embeds Debian's Python 3, which finds its home through the python3 on PATH: folders
    # holding another python3 (pyenv, virtual environments) would hide PyQt5 and Krita's modules.
    env["PATH"] = os.pathsep.join(d for d in env.get("PATH", "").split(os.pathsep)
                                  if d in ("/usr/bin", "/bin") or not os.path.exists(os.path.join(d, "python3")))
    for k in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(k, None)
    cmd = [xvfb, "-a", "-s", "-screen 0 1280x900x24", krita, "--nosplash"]
    # A runtime folder of its own: Krita forwards to an instance already running on the same one.
    env["XDG_RUNTIME_DIR"] = os.path.join(work, "runtime")
    os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output = p.communicate(timeout=300)[0].decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # xvfb-run, Xvfb and Krita: the group this run started
        output = p.communicate()[0].decode("utf-8", "replace") + "\n(krita did not finish in 300 s)"
    if os.path.exists(out + ".log"):
        with open(out + ".log") as f:
            print(f.read() if not os.path.exists(out) else "")
    if not os.path.exists(out):
        print(output[-6000:])
        print("FAILED: the driver wrote no report (%s): the plug-in did not load or Krita did not start" % out)
        return 1
    with open(out) as f:
        report = json.load(f)
    for line in report["log"]:
        print(line)
    failed = [k for k, c in report["checks"].items() if not c["ok"]]
    if failed or not report["ok"]:
        print(output[-4000:])
        print("FAILED:", ", ".join(failed) or "no checks ran")
        return 1
    print("krita e2e: %d checks passed" % len(report["checks"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
