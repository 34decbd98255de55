# Ventros: PGXS build of the extension (and, from src/http, the HTTP front).
EXTENSION   = ventros
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" ventros.control)

MODULE_big  = ventros
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
SHLIB_LINK  = $(VENTROS_LIBS) -lrabbitmq
VENTROS_LIBS ?=
PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK += -lcurl
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
              -Wno-sign-compare -Wno-clobbered

# The install script is assembled from sql/ in file-name order (sql/NN_*.sql);
# the folder is a prerequisite too, so removing a file rebuilds.  Committed
# under extension/ and never edited once released: the full install script of
# each earlier release, and the hand-written upgrade scripts
# (extension/ventros--<from>--<to>.sql; the one to this version is edited
# until it is released).
SQL_SOURCES = $(sort $(wildcard sql/*.sql))
INSTALL_built = extension/$(EXTENSION)--$(EXTVERSION).sql
DATA_built  = $(INSTALL_built)
DATA        = $(filter-out $(DATA_built),$(wildcard extension/$(EXTENSION)--*.sql))

# Isolation specs run with PostgreSQL's own isolation tester against a running,
# preloaded server (PGHOST/PGPORT): make installcheck.
ISOLATION      = $(sort $(notdir $(basename $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=pgcrypto --load-extension=pg_trgm --load-extension=$(EXTENSION)

EXTRA_CLEAN = $(DATA_built) output_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(INSTALL_built): $(SQL_SOURCES) sql ventros.control
	@mkdir -p extension
	@{ echo "-- Generated from sql/ by make: do not edit. Ventros $(EXTVERSION)."; \
	   printf '%s\n' '\echo Use "CREATE EXTENSION ventros" to load this file. \quit'; \
	   for f in $(SQL_SOURCES); do echo; echo "-- ---- $$f"; cat $$f; done; } > $@


# PGXS does not track header dependencies: every object depends on every header.
$(OBJS): $(wildcard src/*.h)

# ventros-http, the HTTP front: a program of its own, left in src/http/.
HTTP_SRCS   = $(sort $(wildcard src/http/*.c))
HTTP_CFLAGS = -O2 -g -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
              -pthread -I$(shell $(PG_CONFIG) --includedir) $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
HTTP_LIBS   = $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd) \
              -L$(shell $(PG_CONFIG) --libdir) -lpq -ljwt -lcrypto -pthread
# the agent console (console/): served from the binary, built into it
CONSOLE_FILES  = $(sort $(wildcard console/*.html console/*.css console/*.js))
CONSOLE_ASSETS = src/http/console_assets.h
$(CONSOLE_ASSETS): $(CONSOLE_FILES) scripts/c-assets.sh
	sh scripts/c-assets.sh $(CONSOLE_FILES) > $@.tmp && mv $@.tmp $@
EXTRA_CLEAN += $(CONSOLE_ASSETS)
all: src/http/ventros-http
src/http/ventros-http: $(HTTP_SRCS) $(wildcard src/http/*.h) $(CONSOLE_ASSETS)
	$(CC) $(HTTP_CFLAGS) -o $@ $(HTTP_SRCS) $(HTTP_LIBS)
EXTRA_CLEAN += src/http/ventros-http

# ---- sanitizers and fuzzing (docs/security.md, "Sanitizers and fuzzing") ----
# ventros-http built by clang with AddressSanitizer and UndefinedBehaviorSanitizer
# (task.c announces its stack switches to ASan); the integration tests run it
# when VENTROS_HTTP_BIN names it.  make fuzz: the libFuzzer harnesses of test/fuzz.
HTTP_ASAN_CC     ?= clang
HTTP_ASAN_CFLAGS  = $(filter-out -O2,$(HTTP_CFLAGS)) -O1 -fno-omit-frame-pointer \
                    -fsanitize=address,undefined -fno-sanitize-recover=all
http-asan: src/http/ventros-http-asan
src/http/ventros-http-asan: $(HTTP_SRCS) $(wildcard src/http/*.h) $(CONSOLE_ASSETS)
	$(HTTP_ASAN_CC) $(HTTP_ASAN_CFLAGS) -o $@ $(HTTP_SRCS) $(HTTP_LIBS)
EXTRA_CLEAN += src/http/ventros-http-asan
fuzz:
	$(MAKE) -C test/fuzz PG_CONFIG=$(PG_CONFIG)
.PHONY: http-asan fuzz
