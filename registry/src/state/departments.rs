//! Departments: the members of the exchange, their hierarchy and their nodes' endpoints.

use super::*;

impl State {
    /// Whether `id` is a registered department.
    pub fn is_member(&self, id: &str) -> Result<bool, CoreError> {
        Ok(self.store.get(&dept_key(id))?.is_some())
    }

    /// Registers a department.
    pub async fn register_department(&self, p: &Principal, mut dept: Department) -> Result<Department, CoreError> {
        authz::manage_departments(p)?;
        self.write(p, "register_department", |tx| {
            if self.get::<Department>(&dept_key(&dept.id))?.is_some() {
                return Err(CoreError::AlreadyExists(format!(
                    "department {} is already registered",
                    dept.id
                )));
            }
            let parent = self.parent_of(&dept)?;
            department::validate(&dept, parent.as_ref())?;
            let t = self.now();
            dept.created_at = t;
            dept.updated_at = t;
            dept.revision = tx.next_revision(Kind::Department, &dept.id)?;
            tx.put(dept_key(&dept.id), &dept)?;
            Ok(dept)
        })
        .await
        .inspect(|d| tracing::info!(by = %p, department = %d.id, revision = d.revision, "department registered"))
    }

    fn parent_of(&self, dept: &Department) -> Result<Option<Department>, CoreError> {
        match &dept.parent_id {
            Some(parent) => self.get(&dept_key(parent)),
            None => Ok(None),
        }
    }

    /// Replaces a department's updatable fields.
    pub async fn update_department(&self, p: &Principal, mut dept: Department) -> Result<Department, CoreError> {
        authz::manage_departments(p)?;
        self.write(p, "update_department", |tx| {
            let old: Department = self
                .get(&dept_key(&dept.id))?
                .ok_or_else(|| CoreError::not_found(format!("department {} is not registered", dept.id)))?;
            unchanged_since("department", &dept.id, dept.revision, old.revision)?;
            let parent = self.parent_of(&dept)?;
            department::validate(&dept, parent.as_ref())?;
            // Its children must still fit under it (a level above theirs, a region holding theirs):
            // a child that fitted the department as it was must fit it as it will be. One
            // registered under older rules that never fitted does not block the update.
            for child in self.scan::<Department>(b"dept/")? {
                if child.parent_id.as_deref() != Some(dept.id.as_str()) {
                    continue;
                }
                if department::validate(&child, Some(&old)).is_err() {
                    continue;
                }
                if let Err(e) = department::validate(&child, Some(&dept)) {
                    let field = if e.field == "parent_id" { "level" } else { "region_code" };
                    return Err(ValidationError::new(
                        field,
                        format!(
                            "child department {} would no longer fit under it: {}",
                            child.id, e.message
                        ),
                    )
                    .into());
                }
            }
            dept.created_at = old.created_at;
            dept.updated_at = self.now();
            dept.revision = tx.next_revision(Kind::Department, &dept.id)?;
            tx.put(dept_key(&dept.id), &dept)?;
            Ok(dept)
        })
        .await
        .inspect(|d| tracing::info!(by = %p, department = %d.id, revision = d.revision, "department updated"))
    }

    /// Sets the node endpoint of the caller's own department; a repeat of the current endpoint
    /// writes nothing (nodes announce on every connect).
    pub async fn announce_node(&self, p: &Principal, endpoint: String) -> Result<Department, CoreError> {
        authz::announce_node(p)?;
        let current = self.get_department(&p.department)?;
        if current.node_endpoint.as_deref() == Some(endpoint.as_str()) {
            return Ok(current);
        }
        self.write(p, "announce_node", |tx| {
            // Read again under the writer lock, so a concurrent admin update is not undone.
            let mut dept = self.get_department(&p.department)?;
            // Only the endpoint changes, so only it is checked: a department registered under
            // older rules still announces its node.
            department::check_endpoint(&endpoint)?;
            dept.node_endpoint = Some(endpoint.clone());
            tx.event.reason = format!("node endpoint {endpoint}");
            dept.updated_at = self.now();
            dept.revision = tx.next_revision(Kind::Department, &dept.id)?;
            tx.put(dept_key(&dept.id), &dept)?;
            Ok(dept)
        })
        .await
        .inspect(|d| tracing::info!(by = %p, department = %d.id, endpoint = d.node_endpoint.as_deref().unwrap_or(""), "node announced"))
    }

    /// One department.
    pub fn get_department(&self, id: &str) -> Result<Department, CoreError> {
        self.get(&dept_key(id))?
            .ok_or_else(|| CoreError::not_found(format!("department {id} is not registered")))
    }

    /// Departments, optionally only the children of `parent` or those at `level`.
    pub fn list_departments(&self, parent: Option<&str>, level: Option<Level>) -> Result<Vec<Department>, CoreError> {
        Ok(self
            .scan::<Department>(b"dept/")?
            .into_iter()
            .filter(|d| parent.is_none_or(|p| d.parent_id.as_deref() == Some(p)))
            .filter(|d| level.is_none_or(|l| d.level == l))
            .collect())
    }
}
