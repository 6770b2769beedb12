# shop snapshot file contents: the aggregates at one seq, as recovery reads
# them back (see core/snapshot.h for the file's framing). Storage, not wire:
# a snapshot is read only by the server that wrote it or a newer one, so the
# same compatibility rules as shop.capnp apply (fields only ever added).

@0xfddeff39e1043a64;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("shop::wire");

# The first record of a snapshot file.
struct SnapshotInfo {
  seq @0 :UInt64;         # the state is the fold of events 1..seq
  serverId @1 :UInt64;
  # The first seq recovery reads from the journal: it rebuilds the in-memory
  # retention and the dedupe window from there (seqs up to `seq` change no
  # aggregate), then replays the rest.
  replayFrom @2 :UInt64;
  chunks @3 :UInt32;      # SnapshotChunk records after this one
  customers @4 :UInt64;   # in all chunks together
  products @5 :UInt64;
  nextHoldId @6 :UInt64;  # the next id a hold gets (0: a snapshot from before holds)
}

struct SnapshotLot {
  unitPrice @0 :Int64;
  quantity @1 :Int64;
}

struct SnapshotHolding {
  product @0 :Text;
  lots @1 :List(SnapshotLot);  # purchase order, oldest first
}

struct SnapshotHold {
  holdId @0 :UInt64;
  product @1 :Text;
  quantity @2 :Int64;
  unitPrice @3 :Int64;
  expiresAtNs @4 :Int64;
}

struct SnapshotCustomer {
  id @0 :Text;
  balance @1 :Int64;
  holdings @2 :List(SnapshotHolding);
  holds @3 :List(SnapshotHold);  # live holds, oldest first
}

struct SnapshotProduct {
  id @0 :Text;
  price @1 :Int64;
  stock @2 :Int64;
  sold @3 :Int64;
  held @4 :Int64;         # units in live holds
}

struct SnapshotChunk {
  customers @0 :List(SnapshotCustomer);
  products @1 :List(SnapshotProduct);
}
