# The environment of a GPU-machine call, sourced by device_run.sh and compare_kernels.sh: NCCL's
# settings for the lent machines, and the wheels carried in .whl (the machine has no package
# index; nvidia-cutlass for the hopper build) installed into /tmp/site on PYTHONPATH.
export PYTHONUNBUFFERED=1
# NVLink multicast (NVLS) stays off on the lent multi-GPU machines.
export NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}"
if compgen -G ".whl/*.whl" >/dev/null; then
  # Once per machine: a second script of the same call finds them installed.
  if [ ! -e /tmp/site/.baracuda-wheels ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
      touch /tmp/site/.baracuda-wheels
  fi
  case ":${PYTHONPATH:-}:" in
    *:/tmp/site:*) ;;
    *) export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" ;;
  esac
fi
