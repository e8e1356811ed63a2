from app.idempotency import repository
from app.jobs.context import JobContext, job


@job
async def purge_expired_idempotency_keys(context: JobContext) -> int:
    """Drop `Idempotency-Key` records past their 24 hours; a key is free again after that."""
    async with context.transaction() as session:
        return await repository.delete_expired(session, now=context.clock.now())
