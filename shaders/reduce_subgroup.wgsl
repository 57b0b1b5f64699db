// reduce.wgsl's interface on subgroup operations, for a workgroup that is one subgroup: the host
// sets WG to at most the adapter's smallest subgroup size, so no barrier and no workgroup memory.
// Chosen per adapter by measurement (`KernelChoice::subgroups`); reduce.wgsl is the portable path.

fn reduce_sum(lane: u32, v: f32) -> f32 {
    return subgroupAdd(v);
}

fn reduce_max(lane: u32, v: f32) -> f32 {
    return subgroupMax(v);
}
