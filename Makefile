# Two commands on a fresh machine:  `make run` (the gateway on embedded defaults) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APT_PACKAGES := dovecot-imapd postgresql chromium systemd

.PHONY: run test test-deps model steps-model bench bench-peers clean

$(BIN)/gateway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,postgres,plot]'
	touch $@

run: $(BIN)/gateway          ## start the gateway: SMTP on 127.0.0.1:2525, SQLite in var/, Maildirs in var/mail/
	$(BIN)/gateway run

test: $(BIN)/gateway test-deps   ## the whole suite against real Dovecot, aiosmtpd and PostgreSQL servers
	$(BIN)/pytest

# Servers the tests run for real; installed with apt when missing and we are root (CI), never skipped.
test-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "tests need:$$missing (apt-get install them, or run as root)"; exit 1; fi; \
	fi

model: $(BIN)/gateway          ## rebuild the shipped default model reproducibly (fixed seed)
	$(BIN)/gateway train --seed 0 --candidate best

steps-model: $(BIN)/gateway    ## rebuild models/steps (has-steps detector) reproducibly
	$(BIN)/gateway train-steps

bench: $(BIN)/gateway              ## needs ../shared/bench beside this checkout (the peer bench's corpus)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.classify
	$(BIN)/python -m bench.hostile
	$(BIN)/python -m bench.console

# Side by side on one corpus: django-helpdesk, the raw IMAP fetch ceiling and this gateway (../shared/bench/peer-bench)
PEER_MESSAGES ?= 2000
PEER_RUNS ?= 1
bench-peers: $(BIN)/gateway
	$(BIN)/python -m bench.peers --messages $(PEER_MESSAGES) --runs $(PEER_RUNS)

clean:
	rm -rf var .pytest_cache
