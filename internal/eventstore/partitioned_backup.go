package eventstore

// After `ordersd migrate --partitions N` the streams of layout 2 (ORDERS
// and ORDER_IDS) are kept as the backup of the orders, untouched but for
// their metadata: MetadataMigration set to MigratedToPartitions and
// MetadataPartitions to N. A node of layout 3 with N partitions accepts
// the backup beside its partitions; a node of layout 2 refuses to start
// and names --partitions N (it would otherwise serve the old copy).

// MigratedToPartitions is the MetadataMigration value of the streams of
// layout 2 once their orders were migrated to partitions.
const MigratedToPartitions = "done: migrated to partitions"

// migratedTo is the number of partitions the stream with metadata meta
// was migrated to, and whether it was.
func migratedTo(meta map[string]string) (string, bool) {
	if meta[MetadataMigration] != MigratedToPartitions {
		return "", false
	}
	return meta[MetadataPartitions], true
}
