(* Builds through the OCaml module on a simulated host. *)
open OUnit2

let hvmloader = "/usr/lib/xen-4.17/boot/hvmloader"
let mib = 1024

let new_domain sim ~mem_mib =
  let domid = Xenguest.Sim.create_domain sim ~vcpus:2 ~max_mem_kib:((mem_mib * 1024) + 1024) () in
  let path k = Printf.sprintf "/local/domain/%d/platform/%s" domid k in
  Xenguest.Sim.write sim (path "vcpu/number") "2";
  Xenguest.Sim.write sim (path "vcpu/current") "2";
  domid

let hvm_args ?(mem_start_mib = 4 * mib) domid =
  Xenguest.args ~domid ~mem_max_mib:(4 * mib) ~mem_start_mib ~image:hvmloader ~store_port:1
    ~console_port:2

let expect_error ~step f =
  match f () with
  | _ -> assert_failure ("expected Xenguest.Error at " ^ step)
  | exception Xenguest.Error { step = s; code; message } ->
      assert_equal ~printer:(fun s -> s) step s;
      (code, message)

let test_hvm_build _ =
  let sim = Xenguest.Sim.create ~spec:"nodes=2,node_mib=8192" in
  let domid = new_domain sim ~mem_mib:(4 * mib) in
  let result, report = Xenguest.hvm_build (Xenguest.Sim.handle sim) (hvm_args domid) in
  assert_equal ~printer:Nativeint.to_string 1044476n result.store_mfn;
  assert_equal ~printer:Nativeint.to_string 1044479n result.console_mfn;
  assert_equal None result.protocol;
  assert_equal ~printer:string_of_int 2 (List.assoc 18 report.pages_by_order lsr 18);
  assert_bool "far fewer populate calls than libxenguest's 259" (report.populate_calls <= 4);
  assert_bool "elapsed measured" (report.elapsed_us > 0);
  let hole = Printf.sprintf "/local/domain/%d/vm-data/mmio-hole-size" domid in
  assert_equal (Some "268435456") (Xenguest.Sim.read sim hole);
  assert_bool "write reported" (List.mem (hole, "268435456") report.xenstore_writes);
  let d = Xenguest.Sim.domain sim domid in
  assert_equal ~printer:string_of_int 0 d.repopulated_pages;
  assert_equal ~printer:string_of_int ((4 * mib * 256) - 32 + 16) d.tot_pages;
  assert_equal (Ok ()) (Xenguest.Sim.check_accounting sim)

let test_pod_and_node _ =
  let sim = Xenguest.Sim.create ~spec:"nodes=2,node_mib=8192" in
  let domid = new_domain sim ~mem_mib:(4 * mib) in
  let a = { (hvm_args ~mem_start_mib:(2 * mib) domid) with mem_pnode = Some 1 } in
  let _, report = Xenguest.hvm_build (Xenguest.Sim.handle sim) a in
  assert_bool "PoD entries" ((Xenguest.Sim.domain sim domid).pod_entries > 0);
  assert_bool "pages by node reported" (report.pages_by_node <> None)

let test_errors _ =
  let _, message = expect_error ~step:"sim" (fun () -> Xenguest.Sim.create ~spec:"nodes=two") in
  assert_bool "names the key" ((let n = String.length "nodes" in let rec go i = i + n <= String.length message && (String.sub message i n = "nodes" || go (i + 1)) in go 0));
  let sim = Xenguest.Sim.create ~spec:"nodes=1,node_mib=4096" in
  let h = Xenguest.Sim.handle sim in
  let domid = new_domain sim ~mem_mib:mib in
  let a = { (hvm_args domid) with mem_max_mib = mib; mem_start_mib = mib } in
  let code, message =
    expect_error ~step:"xc_dom_kernel_file" (fun () ->
        Xenguest.hvm_build h { a with image = "/nonexistent/hvmloader" })
  in
  assert_equal ~printer:string_of_int 2 code;
  assert_equal ~printer:(fun s -> s)
    "xenguest: xc_dom_kernel_file: [2] /nonexistent/hvmloader: No such file or directory" message;
  ignore
    (expect_error ~step:"hvm_build" (fun () ->
         Xenguest.hvm_build h { a with mem_start_mib = 2 * mib }));
  Xenguest.Sim.write sim (Printf.sprintf "/local/domain/%d/platform/cores-per-socket" domid) "3";
  let _, message = expect_error ~step:"get_flags" (fun () -> Xenguest.hvm_build h a) in
  assert_equal ~printer:(fun s -> s) "Bad cores/socket setting: 3 (nr vcpus 2)" message;
  ignore (expect_error ~step:"hvm_build_setup_mem" (fun () ->
      let sim = Xenguest.Sim.create ~spec:"nodes=1,node_mib=4096,free_mib=0:512" in
      let domid = new_domain sim ~mem_mib:mib in
      Xenguest.hvm_build (Xenguest.Sim.handle sim) { a with domid }));
  ignore (expect_error ~step:"xc_interface_open" Xenguest.interface_open);
  Xenguest.close h;
  Xenguest.close h;
  ignore (expect_error ~step:"handle" (fun () -> Xenguest.hvm_build h a))

let test_concurrent_builds _ =
  let sim = Xenguest.Sim.create ~spec:"nodes=2,node_mib=40960" in
  let free = Xenguest.Sim.free_pages sim in
  let h = Xenguest.Sim.handle sim in
  let domids = List.init 16 (fun _ -> new_domain sim ~mem_mib:(4 * mib)) in
  let results = Array.make 16 None in
  let threads =
    List.mapi
      (fun i domid ->
        Thread.create
          (fun () -> results.(i) <- Some (fst (Xenguest.hvm_build h (hvm_args domid))))
          ())
      domids
  in
  List.iter Thread.join threads;
  Array.iter
    (function
      | Some r -> assert_equal 1044476n r.Xenguest.store_mfn | None -> assert_failure "no result")
    results;
  List.iter
    (fun domid ->
      let d = Xenguest.Sim.domain sim domid in
      assert_equal ~printer:string_of_int ((4 * mib * 256) - 32 + 16) d.tot_pages;
      assert_equal 0 d.repopulated_pages)
    domids;
  assert_equal (Ok ()) (Xenguest.Sim.check_accounting sim);
  List.iter (Xenguest.Sim.destroy_domain sim) domids;
  assert_equal ~printer:string_of_int free (Xenguest.Sim.free_pages sim);
  assert_equal ~printer:string_of_int 0 (Xenguest.Sim.outstanding_claims sim);
  assert_equal (Ok ()) (Xenguest.Sim.check_accounting sim)

let test_runtime_lock_released _ =
  (* Another OCaml thread must make progress while builds run. *)
  let sim = Xenguest.Sim.create ~spec:"nodes=2,node_mib=40960" in
  let h = Xenguest.Sim.handle sim in
  let stop = ref false and ticks = ref 0 in
  let spinner = Thread.create (fun () -> while not !stop do incr ticks; Thread.yield () done) () in
  let before = !ticks in
  for _ = 1 to 20 do
    let domid = new_domain sim ~mem_mib:(4 * mib) in
    ignore (Xenguest.hvm_build h (hvm_args domid));
    Xenguest.Sim.destroy_domain sim domid
  done;
  stop := true;
  Thread.join spinner;
  assert_bool "the other thread ran" (!ticks > before)

let () =
  run_test_tt_main
    ("xenguest"
    >::: [
           "hvm build on a simulated host" >:: test_hvm_build;
           "PoD and mem_pnode" >:: test_pod_and_node;
           "errors raise Xenguest.Error" >:: test_errors;
           "16 concurrent builds, exact accounting" >:: test_concurrent_builds;
           "runtime lock released" >:: test_runtime_lock_released;
         ])
