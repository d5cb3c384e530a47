# The two commands the README promises. Both refresh .venv first (a no-op when up to date).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap run test lint clean sync

bootstrap:
	@scripts/bootstrap

run: bootstrap
	$(BIN)/fulqrun-ml run
	$(if $(LIVE),$(BIN)/fulqrun-ml online demo)

lint: bootstrap
	$(BIN)/ruff check src tests scripts serving
	$(BIN)/ruff format --check src tests scripts serving
	$(BIN)/lint-imports

test: lint
	@scripts/install_test_services.sh
	$(BIN)/pytest

clean:
	rm -rf outputs logs models/deal_win models/triton_repo

# Upload the offline W&B runs for a team (needs `wandb login` once; nothing is uploaded by default).
sync: bootstrap
	@find logs -type d -name 'offline-run-*' -print0 | xargs -0 -r $(BIN)/wandb sync
