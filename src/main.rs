fn main() {
    for (name, contents) in domvia_calls::schema::files() {
        if name == "call.ice_candidate.json" || name == "call.ringing.json" || name=="call.started.json" { println!("== {name}\n{contents}"); }
    }
}
