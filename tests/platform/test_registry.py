"""The registry's counts, which the round loop reads after every join of a federation of thousands."""
import asyncio

from server.registry import ClientRegistry


def test_counts_follow_joins_rejoins_and_shutdowns():
    async def scenario():
        registry = ClientRegistry([str(k) for k in range(5)])
        for client_id, examples in (("0", 3), ("1", 0), ("2", 1)):
            registry.join(client_id, "", examples)
        assert (registry.joined, registry.trainable_count) == (3, 2)
        assert registry.trainable_count == len(registry.trainable())
        registry.join("2", "", 0)  # rejoined with an empty shard: no longer trainable
        registry.join("1", "", 4)  # ... and this one now is
        assert (registry.joined, registry.trainable_count) == (3, 2)
        assert [r.client_id for r in registry.trainable()] == ["0", "1"]
        assert not registry.all_gone()
        for record in registry.clients()[:2]:
            registry.mark_shut_down(record)
        assert not registry.all_gone()
        polling = registry.clients()[2]
        registry.poll_started(polling)
        registry.poll_ended(polling, broken=True)  # its connection broke: lost
        assert registry.all_gone()

    asyncio.run(scenario())
