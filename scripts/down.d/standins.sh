# shellcheck shell=bash
# Sourced by scripts/down (and by scripts/test on exit): stops the provider
# stand-ins scripts/up started (their pid files in $RUN, scripts/standins.sh).
# shellcheck source=scripts/standins.sh
source "$VENTROS_ROOT/scripts/standins.sh"
standins_stop "$RUN"
