# The two commands the README promises. Both refresh .venv first (a no-op when up to date).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap run test test-extended lint clean sync

bootstrap:
	@scripts/bootstrap

run: bootstrap
	$(BIN)/fulqrun-ml run
	$(if $(LIVE),$(BIN)/fulqrun-ml online demo)

lint: bootstrap
	$(BIN)/ruff check src tests scripts serving
	$(BIN)/ruff format --check src tests scripts serving
	$(BIN)/lint-imports

# `make test` leaves out the tests marked `extended` (slower twins of guarantees it already checks) to keep CI
# inside its 30-minute budget; `make test-extended` runs them (before a release, or after touching what they cover).
test: lint
	@scripts/install_test_services.sh
	$(BIN)/pytest -m "not extended"

test-extended: bootstrap
	@scripts/install_test_services.sh
	$(BIN)/pytest -m extended

clean:
	rm -rf outputs logs models/deal_win models/triton_repo

# Upload the offline W&B runs for a team (needs `wandb login` once; nothing is uploaded by default).
sync: bootstrap
	@find logs -type d -name 'offline-run-*' -print0 | xargs -0 -r $(BIN)/wandb sync
