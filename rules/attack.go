package rules

import "strings"

// Technique is one entry of the MITRE ATT&CK for ICS matrix.
type Technique struct {
	ID   string
	Name string
	// V19 is the id ATT&CK v19 (April 2026) gave this technique when it
	// became a sub-technique; empty when the id did not change.
	V19 string
}

// techniques is the ICS matrix: the 83 techniques of ATT&CK v18.1 (ids
// stable since v13), then what v19 added (new parent techniques and
// sub-techniques, per MITRE's ics-sub-techniques-crosswalk.json). Rules may
// name either generation; alerts carry the id as the rule wrote it.
var techniques = []Technique{
	{ID: "T0800", Name: "Activate Firmware Update Mode"},
	{ID: "T0801", Name: "Monitor Process State"},
	{ID: "T0802", Name: "Automated Collection"},
	{ID: "T0803", Name: "Block Command Message", V19: "T1691.001"},
	{ID: "T0804", Name: "Block Reporting Message", V19: "T1691.002"},
	{ID: "T0805", Name: "Block Serial COM", V19: "T1695.001"},
	{ID: "T0806", Name: "Brute Force I/O"},
	{ID: "T0807", Name: "Command-Line Interface"},
	{ID: "T0809", Name: "Data Destruction"},
	{ID: "T0811", Name: "Data from Information Repositories"},
	{ID: "T0812", Name: "Default Credentials", V19: "T1694.001"},
	{ID: "T0813", Name: "Denial of Control"},
	{ID: "T0814", Name: "Denial of Service"},
	{ID: "T0815", Name: "Denial of View"},
	{ID: "T0816", Name: "Device Restart/Shutdown"},
	{ID: "T0817", Name: "Drive-by Compromise"},
	{ID: "T0819", Name: "Exploit Public-Facing Application"},
	{ID: "T0820", Name: "Exploitation for Evasion"},
	{ID: "T0821", Name: "Modify Controller Tasking"},
	{ID: "T0822", Name: "External Remote Services"},
	{ID: "T0823", Name: "Graphical User Interface"},
	{ID: "T0826", Name: "Loss of Availability"},
	{ID: "T0827", Name: "Loss of Control"},
	{ID: "T0828", Name: "Loss of Productivity and Revenue"},
	{ID: "T0829", Name: "Loss of View"},
	{ID: "T0830", Name: "Adversary-in-the-Middle"},
	{ID: "T0831", Name: "Manipulation of Control"},
	{ID: "T0832", Name: "Manipulation of View"},
	{ID: "T0834", Name: "Native API"},
	{ID: "T0835", Name: "Manipulate I/O Image"},
	{ID: "T0836", Name: "Modify Parameter"},
	{ID: "T0837", Name: "Loss of Protection"},
	{ID: "T0838", Name: "Modify Alarm Settings"},
	{ID: "T0839", Name: "Module Firmware", V19: "T1693.002"},
	{ID: "T0840", Name: "Network Connection Enumeration"},
	{ID: "T0842", Name: "Network Sniffing"},
	{ID: "T0843", Name: "Program Download"},
	{ID: "T0845", Name: "Program Upload"},
	{ID: "T0846", Name: "Remote System Discovery"},
	{ID: "T0847", Name: "Replication Through Removable Media"},
	{ID: "T0848", Name: "Rogue Master"},
	{ID: "T0849", Name: "Masquerading"},
	{ID: "T0851", Name: "Rootkit"},
	{ID: "T0852", Name: "Screen Capture"},
	{ID: "T0853", Name: "Scripting"},
	{ID: "T0855", Name: "Unauthorized Command Message", V19: "T1692.001"},
	{ID: "T0856", Name: "Spoof Reporting Message", V19: "T1692.002"},
	{ID: "T0857", Name: "System Firmware", V19: "T1693.001"},
	{ID: "T0858", Name: "Change Operating Mode"},
	{ID: "T0859", Name: "Valid Accounts"},
	{ID: "T0860", Name: "Wireless Compromise"},
	{ID: "T0861", Name: "Point & Tag Identification"},
	{ID: "T0862", Name: "Supply Chain Compromise"},
	{ID: "T0863", Name: "User Execution"},
	{ID: "T0864", Name: "Transient Cyber Asset"},
	{ID: "T0865", Name: "Spearphishing Attachment"},
	{ID: "T0866", Name: "Exploitation of Remote Services"},
	{ID: "T0867", Name: "Lateral Tool Transfer"},
	{ID: "T0868", Name: "Detect Operating Mode"},
	{ID: "T0869", Name: "Standard Application Layer Protocol"},
	{ID: "T0871", Name: "Execution through API"},
	{ID: "T0872", Name: "Indicator Removal on Host"},
	{ID: "T0873", Name: "Project File Infection"},
	{ID: "T0874", Name: "Hooking"},
	{ID: "T0877", Name: "I/O Image"},
	{ID: "T0878", Name: "Alarm Suppression"},
	{ID: "T0879", Name: "Damage to Property"},
	{ID: "T0880", Name: "Loss of Safety"},
	{ID: "T0881", Name: "Service Stop"},
	{ID: "T0882", Name: "Theft of Operational Information"},
	{ID: "T0883", Name: "Internet Accessible Device"},
	{ID: "T0884", Name: "Connection Proxy"},
	{ID: "T0885", Name: "Commonly Used Port"},
	{ID: "T0886", Name: "Remote Services"},
	{ID: "T0887", Name: "Wireless Sniffing"},
	{ID: "T0888", Name: "Remote System Information Discovery"},
	{ID: "T0889", Name: "Modify Program"},
	{ID: "T0890", Name: "Exploitation for Privilege Escalation"},
	{ID: "T0891", Name: "Hardcoded Credentials", V19: "T1694.002"},
	{ID: "T0892", Name: "Change Credential"},
	{ID: "T0893", Name: "Data from Local System"},
	{ID: "T0894", Name: "System Binary Proxy Execution"},
	{ID: "T0895", Name: "Autorun Image"},
	// ATT&CK v19.
	{ID: "T1691", Name: "Block Operational Technology Message"},
	{ID: "T1691.001", Name: "Block Operational Technology Message: Command Message"},
	{ID: "T1691.002", Name: "Block Operational Technology Message: Reporting Message"},
	{ID: "T1692", Name: "Unauthorized Message"},
	{ID: "T1692.001", Name: "Unauthorized Message: Command Message"},
	{ID: "T1692.002", Name: "Unauthorized Message: Reporting Message"},
	{ID: "T1693", Name: "Modify Firmware"},
	{ID: "T1693.001", Name: "Modify Firmware: System Firmware"},
	{ID: "T1693.002", Name: "Modify Firmware: Module Firmware"},
	{ID: "T1694", Name: "Insecure Credentials"},
	{ID: "T1694.001", Name: "Insecure Credentials: Default Credentials"},
	{ID: "T1694.002", Name: "Insecure Credentials: Hardcoded Credentials"},
	{ID: "T1695", Name: "Block Communications"},
	{ID: "T1695.001", Name: "Block Communications: Serial COM"},
	{ID: "T1695.002", Name: "Block Communications: Ethernet"},
	{ID: "T1695.003", Name: "Block Communications: Wi-Fi"},
	{ID: "T0843.001", Name: "Program Download: Download All"},
	{ID: "T0843.002", Name: "Program Download: Online Edit"},
	{ID: "T0843.003", Name: "Program Download: Program Append"},
	{ID: "T0846.001", Name: "Remote System Discovery: Port Scan"},
	{ID: "T0846.002", Name: "Remote System Discovery: Broadcast Discovery"},
	{ID: "T0846.003", Name: "Remote System Discovery: Multicast Discovery"},
	{ID: "T0873.001", Name: "Project File Infection: Siemens Project File Format"},
}

var techniqueByID = func() map[string]Technique {
	m := make(map[string]Technique, len(techniques))
	for _, t := range techniques {
		m[t.ID] = t
	}
	return m
}()

// LookupTechnique returns the technique with id (case-insensitive).
func LookupTechnique(id string) (Technique, bool) {
	t, ok := techniqueByID[strings.ToUpper(strings.TrimSpace(id))]
	return t, ok
}

// Techniques returns the matrix, in id order.
func Techniques() []Technique { return append([]Technique(nil), techniques...) }
