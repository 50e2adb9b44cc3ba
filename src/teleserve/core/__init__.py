"""The shared kernel: settings, database, unit of work, outbox, audit, money, ids, clock,
calendar, errors, i18n and security primitives. It imports no domain package."""
